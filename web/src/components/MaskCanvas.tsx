import { useCallback, useEffect, useRef, useState, type PointerEvent, type RefObject } from 'react';

export interface MaskCanvasProps {
  /** The image to paint on (a `data:` URL). */
  src: string;
  /** Called after every change with the mask as base64 PNG (white = masked, black = kept), or null when empty. */
  onChange: (mask: string | null) => void;
  /** Mask blur in image pixels, previewed on the overlay. */
  blur?: number;
}

const MAX_UNDO = 30;
/** The painted colour shown over the image (the exported mask is black and white whatever it is). */
const PAINT = [255, 72, 0] as const;
const PAINT_CSS = `rgb(${PAINT.join(',')})`;

/** The mask as a black-and-white PNG of the image's size, or null when nothing is painted. */
export function maskToPng(canvas: HTMLCanvasElement): string | null {
  const ctx = canvas.getContext('2d');
  if (!ctx) return null;
  const { width, height } = canvas;
  const src = ctx.getImageData(0, 0, width, height);
  const out = new ImageData(width, height);
  let any = false;
  for (let i = 0; i < src.data.length; i += 4) {
    const v = src.data[i + 3] >= 128 ? 255 : 0;
    if (v) any = true;
    out.data[i] = out.data[i + 1] = out.data[i + 2] = v;
    out.data[i + 3] = 255;
  }
  if (!any) return null;
  const c = document.createElement('canvas');
  c.width = width;
  c.height = height;
  c.getContext('2d')!.putImageData(out, 0, 0);
  return c.toDataURL('image/png').replace(/^data:[^,]*,/, '');
}

/**
 * Paint a mask over an image: brush and eraser with a size, undo/redo, invert, clear, and a preview of
 * the mask blur. The canvas has the image's own pixel size; it is scaled to fit on screen.
 */
export function MaskCanvas({ src, onChange, blur = 0 }: MaskCanvasProps) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [size, setSize] = useState<[number, number] | null>(null);
  const [brush, setBrush] = useState(32);
  const [eraser, setEraser] = useState(false);
  const undo = useRef<ImageData[]>([]);
  const redo = useRef<ImageData[]>([]);
  const [, setHistoryVersion] = useState(0);
  const last = useRef<[number, number] | null>(null);

  useEffect(() => {
    const img = new Image();
    img.onload = () => setSize([img.naturalWidth, img.naturalHeight]);
    img.src = src;
    undo.current = [];
    redo.current = [];
    onChange(null);
  }, [src]); // a new image starts a new mask (onChange is not a reason to)

  const ctx = () => canvas.current?.getContext('2d', { willReadFrequently: true }) ?? null;
  const emit = useCallback(() => {
    if (canvas.current) onChange(maskToPng(canvas.current));
    setHistoryVersion((v) => v + 1);
  }, [onChange]);

  const snapshot = () => {
    const c = ctx();
    if (!c || !canvas.current) return;
    undo.current.push(c.getImageData(0, 0, canvas.current.width, canvas.current.height));
    if (undo.current.length > MAX_UNDO) undo.current.shift();
    redo.current = [];
  };

  const toCanvas = (e: PointerEvent<HTMLCanvasElement>): [number, number] => {
    const r = e.currentTarget.getBoundingClientRect();
    return [
      ((e.clientX - r.left) / r.width) * e.currentTarget.width,
      ((e.clientY - r.top) / r.height) * e.currentTarget.height,
    ];
  };
  const scale = (e: PointerEvent<HTMLCanvasElement>) =>
    e.currentTarget.width / e.currentTarget.getBoundingClientRect().width;

  const stroke = (from: [number, number], to: [number, number], width: number) => {
    const c = ctx();
    if (!c) return;
    c.globalCompositeOperation = eraser ? 'destination-out' : 'source-over';
    c.strokeStyle = PAINT_CSS;
    c.fillStyle = PAINT_CSS;
    c.lineWidth = width;
    c.lineCap = 'round';
    c.lineJoin = 'round';
    c.beginPath();
    c.moveTo(from[0], from[1]);
    c.lineTo(to[0], to[1]);
    c.stroke();
    c.beginPath();
    c.arc(to[0], to[1], width / 2, 0, Math.PI * 2);
    c.fill();
  };

  function onDown(e: PointerEvent<HTMLCanvasElement>) {
    e.currentTarget.setPointerCapture?.(e.pointerId);
    snapshot();
    const p = toCanvas(e);
    last.current = p;
    stroke(p, p, brush * scale(e));
  }
  function onMove(e: PointerEvent<HTMLCanvasElement>) {
    if (!last.current) return;
    const p = toCanvas(e);
    stroke(last.current, p, brush * scale(e));
    last.current = p;
  }
  function onUp() {
    if (!last.current) return;
    last.current = null;
    emit();
  }

  function restore(from: RefObject<ImageData[]>, to: RefObject<ImageData[]>) {
    const c = ctx();
    const data = from.current.pop();
    if (!c || !data || !canvas.current) return;
    to.current.push(c.getImageData(0, 0, canvas.current.width, canvas.current.height));
    c.putImageData(data, 0, 0);
    emit();
  }
  function invert() {
    const c = ctx();
    if (!c || !canvas.current) return;
    snapshot();
    const d = c.getImageData(0, 0, canvas.current.width, canvas.current.height);
    for (let i = 0; i < d.data.length; i += 4) {
      const a = d.data[i + 3] >= 128 ? 0 : 255;
      [d.data[i], d.data[i + 1], d.data[i + 2]] = PAINT;
      d.data[i + 3] = a;
    }
    c.putImageData(d, 0, 0);
    emit();
  }
  function clear() {
    const c = ctx();
    if (!c || !canvas.current) return;
    snapshot();
    c.clearRect(0, 0, canvas.current.width, canvas.current.height);
    emit();
  }

  const displayBlur =
    size && canvas.current ? blur / (size[0] / canvas.current.getBoundingClientRect().width || 1) : 0;
  return (
    <div className="mask-editor">
      <div className="mask-tools" role="toolbar" aria-label="Mask tools">
        <label className="field number">
          <span>Brush</span>
          <input
            type="range"
            aria-label="Brush size"
            min={1}
            max={200}
            value={brush}
            onChange={(e) => setBrush(Number(e.target.value))}
          />
          <span>{brush}</span>
        </label>
        <button className={eraser ? '' : 'active'} aria-pressed={!eraser} onClick={() => setEraser(false)}>
          Brush
        </button>
        <button className={eraser ? 'active' : ''} aria-pressed={eraser} onClick={() => setEraser(true)}>
          Eraser
        </button>
        <button disabled={!undo.current.length} onClick={() => restore(undo, redo)}>
          Undo
        </button>
        <button disabled={!redo.current.length} onClick={() => restore(redo, undo)}>
          Redo
        </button>
        <button onClick={invert}>Invert</button>
        <button onClick={clear}>Clear</button>
      </div>
      <div className="mask-stage">
        <img src={src} alt="Image to inpaint" draggable={false} />
        {size && (
          <canvas
            ref={canvas}
            aria-label="Mask"
            width={size[0]}
            height={size[1]}
            style={{ filter: displayBlur > 0 ? `blur(${displayBlur.toFixed(1)}px)` : undefined }}
            onPointerDown={onDown}
            onPointerMove={onMove}
            onPointerUp={onUp}
            onPointerCancel={onUp}
            onPointerLeave={onUp}
          />
        )}
      </div>
    </div>
  );
}
