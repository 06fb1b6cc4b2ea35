import { useCallback, useEffect, useState } from 'react';
import { imageUrl } from '../api.ts';
import { NumberField, Radio, SelectField, type Bound } from '../components/fields.tsx';
import { ImageDrop } from '../components/ImageDrop.tsx';
import { MaskCanvas } from '../components/MaskCanvas.tsx';
import { Output } from '../components/Output.tsx';
import { ParamsPanel } from '../components/ParamsPanel.tsx';
import { TopRow } from '../components/TopRow.tsx';
import { field } from '../fields.ts';
import { seedOf, useGeneration } from '../generation.ts';
import { normalise, toRequest } from '../request.ts';
import { useServer } from '../server-state.tsx';

export type Img2ImgTab = 'img2img' | 'inpaint';

export interface Img2ImgProps {
  form: Bound;
  image: string | null;
  setImage: (b64: string | null) => void;
  tab: Img2ImgTab;
  setTab: (tab: Img2ImgTab) => void;
}

/** img2img and inpaint: an init image (upload, drop, paste, or sent from a result) and a painted mask. */
export function Img2Img({ form, image, setImage, tab, setTab }: Img2ImgProps) {
  const { lists } = useServer();
  const { state: gen, run, unqueue, show } = useGeneration();
  const [mask, setMask] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  // Width and height follow the image (multiples of 8), however it came: chosen, dropped, pasted or
  // sent from a result (a hires-fix result is larger than the size its request asked for).
  const setField = form.set;
  useEffect(() => {
    if (!image) return;
    const img = new Image();
    img.onload = () => {
      setField('width', normalise(field('width'), img.naturalWidth));
      setField('height', normalise(field('height'), img.naturalHeight));
    };
    img.src = imageUrl(image);
  }, [image, setField]);

  const generate = useCallback(() => {
    if (!image) {
      setError('Choose an image first.');
      return;
    }
    if (tab === 'inpaint' && !mask) {
      setError('Paint a mask over the part to change (or use the img2img tab).');
      return;
    }
    setError(null);
    const req = toRequest('img2img', form.state);
    req.init_images = [image];
    if (tab === 'inpaint' && mask) req.mask = mask;
    else {
      for (const k of [
        'mask_blur',
        'inpainting_fill',
        'inpaint_full_res',
        'inpaint_full_res_padding',
        'inpainting_mask_invert',
      ])
        delete req[k];
    }
    run('img2img', req);
  }, [form.state, image, mask, run, tab]);

  const lastSeed = seedOf(gen.result?.info ?? null, 0);
  return (
    <div className="screen">
      <TopRow
        mode="img2img"
        form={form}
        running={gen.running}
        onGenerate={generate}
        styles={lists?.styles ?? []}
      />
      <div className="columns">
        <div className="params-col">
          <div className="subtabs" role="tablist">
            {(['img2img', 'inpaint'] as const).map((t) => (
              <button
                key={t}
                role="tab"
                aria-selected={tab === t}
                className={tab === t ? 'active' : ''}
                onClick={() => setTab(t)}
              >
                {t}
              </button>
            ))}
          </div>
          <ImageDrop label="Choose image" onImage={setImage}>
            {image && tab === 'img2img' && (
              <img className="init-image" src={imageUrl(image)} alt="Init image" />
            )}
            {image && tab === 'inpaint' && (
              <MaskCanvas src={imageUrl(image)} onChange={setMask} blur={Number(form.state.mask_blur ?? 0)} />
            )}
          </ImageDrop>
          {error && (
            <p className="error" role="alert">
              {error}
            </p>
          )}
          <SelectField name="resize_mode" form={form} />
          {tab === 'inpaint' && (
            <div className="inpaint-options">
              <NumberField name="mask_blur" form={form} />
              <Radio name="inpainting_mask_invert" form={form} />
              <Radio name="inpainting_fill" form={form} />
              <Radio name="inpaint_full_res" form={form} />
              <NumberField name="inpaint_full_res_padding" form={form} />
            </div>
          )}
          <ParamsPanel mode="img2img" form={form} lists={lists} lastSeed={lastSeed} />
        </div>
        <Output
          gen={gen}
          onUnqueue={unqueue}
          onShow={show}
          actions={{
            onSend: (target, img) => {
              setTab(target);
              setImage(img);
            },
            onReuseSeed: (seed) => form.set('seed', seed),
          }}
        />
      </div>
    </div>
  );
}
