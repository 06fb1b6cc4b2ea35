/** PSNR of `a` against `ref` in dB, the peak being the largest |ref| value. */
export function psnr(a: Float32Array, ref: Float32Array): number {
  let se = 0;
  let peak = 0;
  for (let i = 0; i < ref.length; i++) {
    se += (a[i]! - ref[i]!) ** 2;
    peak = Math.max(peak, Math.abs(ref[i]!));
  }
  return 10 * Math.log10((peak * peak) / (se / ref.length));
}
