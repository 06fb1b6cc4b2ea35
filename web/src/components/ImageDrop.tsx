import { useEffect, useRef, useState, type ReactNode } from 'react';
import { fileToBase64 } from '../api.ts';

export interface ImageDropProps {
  label: string;
  /** base64 of the file and its MIME type. */
  onImage: (b64: string, type: string) => void;
  /** Also take images pasted anywhere on the page while this is shown. */
  paste?: boolean;
  children?: ReactNode;
}

/** Drop, choose or paste an image file. */
export function ImageDrop({ label, onImage, paste = true, children }: ImageDropProps) {
  const input = useRef<HTMLInputElement>(null);
  const zone = useRef<HTMLDivElement>(null);
  const [over, setOver] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const take = async (file: File | undefined | null) => {
    if (!file) return;
    if (!file.type.startsWith('image/')) {
      setError(`${file.name || 'That file'} is not an image.`);
      return;
    }
    setError(null);
    onImage(await fileToBase64(file), file.type);
  };

  useEffect(() => {
    if (!paste) return;
    const onPaste = (e: ClipboardEvent) => {
      // Only while this drop zone is on screen (screens stay mounted but hidden).
      if (!zone.current || zone.current.offsetParent === null) return;
      const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
      if (file) {
        e.preventDefault();
        void take(file);
      }
    };
    window.addEventListener('paste', onPaste);
    return () => window.removeEventListener('paste', onPaste);
  });

  return (
    <div
      ref={zone}
      className={over ? 'drop over' : 'drop'}
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        void take(e.dataTransfer.files[0]);
      }}
    >
      {children}
      <div className="drop-hint">
        <button onClick={() => input.current?.click()}>{label}</button>
        <span> or drop / paste an image here</span>
      </div>
      <input
        ref={input}
        type="file"
        accept="image/*"
        hidden
        aria-label={label}
        onChange={(e) => {
          void take(e.target.files?.[0]);
          e.target.value = '';
        }}
      />
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
