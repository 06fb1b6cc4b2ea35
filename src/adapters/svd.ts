/**
 * The top-r singular triplets of a float matrix, in float64, for LoRA extraction: exact (Jacobi
 * eigen-decomposition of the smaller Gram matrix) when the smaller side is at most 256, else a
 * randomized range finder with power iterations and the same exact step on the small projection.
 */

/** Cyclic Jacobi eigen-decomposition of a symmetric n×n matrix (row-major); eigenvalues descending. */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    let diag = 0;
    for (let p = 0; p < n; p++) {
      diag += A[p * n + p]! ** 2;
      for (let q = p + 1; q < n; q++) off += A[p * n + q]! ** 2;
    }
    if (off <= 1e-30 * Math.max(diag, 1e-300)) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const app = A[p * n + p]!;
        const aqq = A[q * n + q]!;
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p]!;
          const akq = A[k * n + q]!;
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k]!;
          const aqk = A[q * n + k]!;
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p]!;
          const vkq = V[k * n + q]!;
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => A[y * n + y]! - A[x * n + x]!);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n); // column j = eigenvector j
  order.forEach((src, j) => {
    values[j] = A[src * n + src]!;
    for (let k = 0; k < n; k++) vectors[k * n + j] = V[k * n + src]!;
  });
  return { values, vectors };
}

/** Top-r SVD of m×n `mat` (row-major): U [m,r], S [r], Vh [r,n]. */
export function topSvd(
  mat: Float64Array,
  m: number,
  n: number,
  r: number,
): { U: Float64Array; S: Float64Array; Vh: Float64Array } {
  if (Math.min(m, n) > 256) return randomizedSvd(mat, m, n, r);
  const U = new Float64Array(m * r);
  const S = new Float64Array(r);
  const Vh = new Float64Array(r * n);
  if (n <= m) {
    // G = MᵀM [n,n]: right singular vectors.
    const G = new Float64Array(n * n);
    for (let i = 0; i < m; i++)
      for (let a = 0; a < n; a++) {
        const x = mat[i * n + a]!;
        if (x === 0) continue;
        for (let b = a; b < n; b++) G[a * n + b] += x * mat[i * n + b]!;
      }
    for (let a = 0; a < n; a++) for (let b = 0; b < a; b++) G[a * n + b] = G[b * n + a]!;
    const { values, vectors } = symmetricEigen(G, n);
    for (let j = 0; j < r; j++) {
      const sigma = Math.sqrt(Math.max(values[j]!, 0));
      S[j] = sigma;
      for (let b = 0; b < n; b++) Vh[j * n + b] = vectors[b * n + j]!;
      for (let i = 0; i < m; i++) {
        let s = 0;
        for (let b = 0; b < n; b++) s += mat[i * n + b]! * Vh[j * n + b]!;
        U[i * r + j] = sigma > 0 ? s / sigma : 0;
      }
    }
  } else {
    const G = new Float64Array(m * m);
    for (let a = 0; a < m; a++)
      for (let b = a; b < m; b++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += mat[a * n + k]! * mat[b * n + k]!;
        G[a * m + b] = s;
        G[b * m + a] = s;
      }
    const { values, vectors } = symmetricEigen(G, m);
    for (let j = 0; j < r; j++) {
      const sigma = Math.sqrt(Math.max(values[j]!, 0));
      S[j] = sigma;
      for (let i = 0; i < m; i++) U[i * r + j] = vectors[i * m + j]!;
      for (let b = 0; b < n; b++) {
        let s = 0;
        for (let i = 0; i < m; i++) s += mat[i * n + b]! * U[i * r + j]!;
        Vh[j * n + b] = sigma > 0 ? s / sigma : j === b ? 1 : 0;
      }
    }
  }
  return { U, S, Vh };
}

/** Orthonormalise the k columns of an m×k matrix in place (modified Gram–Schmidt). */
function orthonormalize(q: Float64Array, m: number, k: number): void {
  for (let j = 0; j < k; j++) {
    for (let p = 0; p < j; p++) {
      let d = 0;
      for (let i = 0; i < m; i++) d += q[i * k + j]! * q[i * k + p]!;
      for (let i = 0; i < m; i++) q[i * k + j] -= d * q[i * k + p]!;
    }
    let norm = 0;
    for (let i = 0; i < m; i++) norm += q[i * k + j]! ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let i = 0; i < m; i++) q[i * k + j] /= norm;
  }
}

/** Halko–Martinsson–Tropp: range of M (M Mᵀ)^q Ω, then the exact SVD of the k×n projection. */
function randomizedSvd(mat: Float64Array, m: number, n: number, r: number) {
  const k = Math.min(Math.min(m, n), r + 16);
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const Y = new Float64Array(m * k);
  const mul = (omega: Float64Array) => {
    // Y = M Ω, Ω [n,k]
    Y.fill(0);
    for (let i = 0; i < m; i++)
      for (let b = 0; b < n; b++) {
        const x = mat[i * n + b]!;
        if (x === 0) continue;
        for (let j = 0; j < k; j++) Y[i * k + j] += x * omega[b * k + j]!;
      }
  };
  const omega = new Float64Array(n * k).map(rand);
  mul(omega);
  const Z = new Float64Array(n * k);
  for (let it = 0; it < 6; it++) {
    orthonormalize(Y, m, k);
    Z.fill(0); // Z = Mᵀ Y
    for (let i = 0; i < m; i++)
      for (let b = 0; b < n; b++) {
        const x = mat[i * n + b]!;
        if (x === 0) continue;
        for (let j = 0; j < k; j++) Z[b * k + j] += x * Y[i * k + j]!;
      }
    orthonormalize(Z, n, k);
    mul(Z);
  }
  orthonormalize(Y, m, k);
  // B = Qᵀ M [k,n]
  const B = new Float64Array(k * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < k; j++) {
      const q = Y[i * k + j]!;
      if (q === 0) continue;
      for (let b = 0; b < n; b++) B[j * n + b] += q * mat[i * n + b]!;
    }
  const small = topSvd(B, k, n, r);
  const U = new Float64Array(m * r);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < r; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += Y[i * k + p]! * small.U[p * r + j]!;
      U[i * r + j] = s;
    }
  return { U, S: small.S, Vh: small.Vh };
}
