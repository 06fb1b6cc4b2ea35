/**
 * The prompt box's token counter: asks the server (POST /api/v1/tokenize, the pipeline's own
 * tokenizer and prompt parser) once typing pauses, and keeps only the answer to the latest text.
 */
import { useEffect, useRef, useState } from 'react';
import { api, type ApiError, type TokenCount } from './api.ts';

export interface TokenCountQuery {
  negative?: boolean;
  steps?: number;
  styles?: string[];
}

/** A1111 waits 800 ms; a shorter pause still spares the server one request per key. */
export const TOKEN_COUNT_DELAY_MS = 400;

export function useTokenCount(
  text: string,
  query: TokenCountQuery | undefined,
  delayMs = TOKEN_COUNT_DELAY_MS,
): { count: TokenCount | null; error: string | null } {
  const [count, setCount] = useState<TokenCount | null>(null);
  const [error, setError] = useState<string | null>(null);
  const latest = useRef(0);
  const key = query
    ? JSON.stringify([text, query.negative ?? false, query.steps ?? 20, query.styles ?? []])
    : null;
  useEffect(() => {
    if (key === null) return;
    const [prompt, negative, steps, styles] = JSON.parse(key) as [string, boolean, number, string[]];
    const id = ++latest.current;
    const timer = setTimeout(() => {
      api
        .tokenize({ prompt, negative, steps, styles })
        .then((c) => {
          if (id !== latest.current) return;
          setCount(c);
          setError(null);
        })
        // The server's reason (a prompt too long to count); a lost server is the page banner's news.
        .catch((e: ApiError) => id === latest.current && e.status > 0 && setError(e.message));
    }, delayMs);
    return () => clearTimeout(timer);
  }, [key, delayMs]);
  return { count, error };
}
