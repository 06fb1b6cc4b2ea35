import { useCallback } from 'react';
import type { Bound } from '../components/fields.tsx';
import { Output } from '../components/Output.tsx';
import { ParamsPanel } from '../components/ParamsPanel.tsx';
import { TopRow } from '../components/TopRow.tsx';
import { seedOf, useGeneration } from '../generation.ts';
import { toRequest } from '../request.ts';
import { useServer } from '../server-state.tsx';

export interface Txt2ImgProps {
  form: Bound;
  onSend: (
    target: 'img2img' | 'inpaint',
    image: string,
    request: Record<string, unknown>,
    seed: number | null,
  ) => void;
}

export function Txt2Img({ form, onSend }: Txt2ImgProps) {
  const { lists } = useServer();
  const { state: gen, run, unqueue, show } = useGeneration();
  const generate = useCallback(() => run('txt2img', toRequest('txt2img', form.state)), [form.state, run]);
  const lastSeed = seedOf(gen.result?.info ?? null, 0);

  return (
    <div className="screen">
      <TopRow
        mode="txt2img"
        form={form}
        running={gen.running}
        onGenerate={generate}
        styles={lists?.styles ?? []}
      />
      <div className="columns">
        <ParamsPanel mode="txt2img" form={form} lists={lists} lastSeed={lastSeed} />
        <Output
          gen={gen}
          onUnqueue={unqueue}
          onShow={show}
          actions={{
            onSend: (target, image) => {
              const index = gen.result?.images.indexOf(image) ?? 0;
              onSend(target, image, gen.result?.request ?? {}, seedOf(gen.result?.info ?? null, index));
            },
            onReuseSeed: (seed) => form.set('seed', seed),
          }}
        />
      </div>
    </div>
  );
}
