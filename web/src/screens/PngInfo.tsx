import { useState } from 'react';
import { api, imageUrl, type PngInfoResponse } from '../api.ts';
import { ImageDrop } from '../components/ImageDrop.tsx';

export interface PngInfoProps {
  /** Send the parsed parameters (and the image, for img2img) to a screen. */
  onSend: (target: 'txt2img' | 'img2img', parameters: Record<string, unknown>, image: string) => void;
}

/** Drop any image: the server reads its metadata (/sdapi/v1/png-info); send the parameters on. */
export function PngInfo({ onSend }: PngInfoProps) {
  const [image, setImage] = useState<string | null>(null);
  const [info, setInfo] = useState<PngInfoResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function read(b64: string) {
    setImage(b64);
    setInfo(null);
    setError(null);
    setBusy(true);
    try {
      setInfo(await api.pngInfo(b64));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }

  const items = Object.entries(info?.items ?? {});
  return (
    <div className="screen columns">
      <ImageDrop label="Choose image" onImage={(b64) => void read(b64)}>
        {image && <img className="init-image" src={imageUrl(image)} alt="Image to read" />}
      </ImageDrop>
      <section className="pnginfo" aria-label="Parameters">
        {busy && <p>Reading…</p>}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        {info && (
          <>
            {info.info ? (
              <pre className="infotext" aria-label="Infotext">
                {info.info}
              </pre>
            ) : (
              <p>No generation parameters in this image.</p>
            )}
            {items.length > 0 && (
              <table className="items">
                <tbody>
                  {items.map(([k, v]) => (
                    <tr key={k}>
                      <th>{k}</th>
                      <td>
                        <pre>{typeof v === 'string' ? v : JSON.stringify(v, null, 2)}</pre>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            {info.info && image && (
              <div className="actions">
                <button onClick={() => onSend('txt2img', info.parameters, image)}>Send to txt2img</button>
                <button onClick={() => onSend('img2img', info.parameters, image)}>Send to img2img</button>
              </div>
            )}
          </>
        )}
      </section>
    </div>
  );
}
