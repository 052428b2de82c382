/* cpu_vecmath.h — template of the cpu backend's transcendental row kernels (GELU-tanh, the
 * GRU gates and the fused GRU step) on GCC/Clang vectors of VM_W floats, compiled with the
 * function attributes VM_ATTR and names suffixed VM_SUF, VM_R rows per fused GRU step.
 * cpu_backend.c includes it once per instruction set (portable SSE, AVX2+FMA, AVX-512) and
 * picks at run time; a wide pass is followed by narrower ones, then scalar tails. Cephes-style
 * expf (relative error ~2e-7 over [-87, 88]); tanh and sigmoid through it (abs error ~1e-7).
 * No include guard: meant to be included more than once. */
#define VM_CAT2(a, b) a##_##b
#define VM_CAT(a, b) VM_CAT2(a, b)
#define VM(name) VM_CAT(name, VM_SUF)
#define VF VM(vf)
#define VI VM(vi)

typedef float VF __attribute__((vector_size(VM_W * 4)));
typedef int32_t VI __attribute__((vector_size(VM_W * 4)));

VM_ATTR static inline VF VM(splat)(float x)
{
    VF z = {0};
    return x - z; /* x - (+0) is x for every x: folds to a broadcast (z + x does not: -0) */
}
VM_ATTR static inline VF VM(sel)(VI m, VF a, VF b) { return (VF)(((VI)a & m) | ((VI)b & ~m)); }
VM_ATTR static inline VF VM(load)(const float *p)
{
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}
VM_ATTR static inline void VM(store)(float *p, VF v) { memcpy(p, &v, sizeof v); }

VM_ATTR static inline VF VM(exp)(VF x)
{
    x = VM(sel)(x > -87.0f, x, VM(splat)(-87.0f));
    x = VM(sel)(x < 88.0f, x, VM(splat)(88.0f));
    VF n = x * 1.44269504088896341f + 12582912.0f;
    n = n - 12582912.0f; /* round to nearest */
    VF r = x - n * 0.693359375f - n * -2.12194440e-4f;
    VF p = VM(splat)(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    VI e = (__builtin_convertvector(n, VI) + 127) << 23;
    VF scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

VM_ATTR static inline VF VM(tanh)(VF u)
{
    u = VM(sel)(u > -9.0f, u, VM(splat)(-9.0f));
    u = VM(sel)(u < 9.0f, u, VM(splat)(9.0f));
    VF e = VM(exp)(u + u);
    return (e - 1.0f) / (e + 1.0f);
}

VM_ATTR static inline VF VM(sigmoid)(VF x) { return 1.0f / (1.0f + VM(exp)(-x)); }

/* x = gelu_tanh(x) from index k on, VM_W at a time; returns where it stopped. */
VM_ATTR static int VM(gelu_tanh_row)(float *x, int d, int k)
{
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
    for (; k + VM_W <= d; k += VM_W) {
        VF v = VM(load)(x + k);
        VF t = VM(tanh)(k0 * (v + 0.044715f * v * v * v));
        VM(store)(x + k, 0.5f * v * (1.0f + t));
    }
    return k;
}

/* One GRU row (gates r, z, n at strides H) from unit k on; returns where it stopped. */
VM_ATTR static int VM(gru_row)(const float *gi, const float *gh, float *h, int H, int k)
{
    for (; k + VM_W <= H; k += VM_W) {
        VF r = VM(sigmoid)(VM(load)(gi + k) + VM(load)(gh + k));
        VF z = VM(sigmoid)(VM(load)(gi + H + k) + VM(load)(gh + H + k));
        VF c = VM(tanh)(VM(load)(gi + 2 * H + k) + r * VM(load)(gh + 2 * H + k));
        VM(store)(h + k, (1.0f - z) * c + z * VM(load)(h + k));
    }
    return k;
}

/* Fused GRU step for up to VM_R rows (nr) and the VM_W units [u, u + VM_W): both GEMMs for
 * these units, gi = x·W_ihᵀ and gh = h·W_hhᵀ, from the packed panels wi and wh (for each input
 * k: the r, z and n weights of the VM_W units, 3·VM_W floats), then the gates (cf. gru_row) and
 * the update. xp[i]: row i's input (H floats); hp[i]: its previous hidden state, or hp[0] ==
 * NULL for h0 = 0 (every row); hn[i]: its new hidden state. Rows i >= nr must repeat a valid
 * row (they are computed, not stored). r and z sum both products in one accumulator, n keeps
 * them apart (r scales only the hidden part): 4·VM_R accumulators, 3 weights, 1 broadcast. */
VM_ATTR static void VM(gru_step)(const float *const *xp, const float *const *hp,
                                 float *const *hn, int nr, const float *wi, const float *wh,
                                 const float *b_ih, const float *b_hh, int H, int u)
{
    VF ar[VM_R], az[VM_R], ai[VM_R], ah[VM_R];
#pragma GCC unroll 8
    for (int i = 0; i < VM_R; i++)
        ar[i] = az[i] = ai[i] = ah[i] = VM(splat)(0.f);
    for (int k = 0; k < H; k++) {
        const float *w = wi + (size_t)k * 3 * VM_W;
        VF wr = VM(load)(w), wz = VM(load)(w + VM_W), wn = VM(load)(w + 2 * VM_W);
#pragma GCC unroll 8
        for (int i = 0; i < VM_R; i++) {
            VF a = VM(splat)(xp[i][k]);
            ar[i] += a * wr, az[i] += a * wz, ai[i] += a * wn;
        }
    }
    if (hp[0])
        for (int k = 0; k < H; k++) {
            const float *w = wh + (size_t)k * 3 * VM_W;
            VF wr = VM(load)(w), wz = VM(load)(w + VM_W), wn = VM(load)(w + 2 * VM_W);
#pragma GCC unroll 8
            for (int i = 0; i < VM_R; i++) {
                VF a = VM(splat)(hp[i][k]);
                ar[i] += a * wr, az[i] += a * wz, ah[i] += a * wn;
            }
        }
    VF br = VM(load)(b_ih + u) + VM(load)(b_hh + u);
    VF bz = VM(load)(b_ih + H + u) + VM(load)(b_hh + H + u);
    VF ci = VM(load)(b_ih + 2 * H + u), ch = VM(load)(b_hh + 2 * H + u);
#pragma GCC unroll 8
    for (int i = 0; i < VM_R; i++)
        if (i < nr) {
            VF r = VM(sigmoid)(ar[i] + br);
            VF z = VM(sigmoid)(az[i] + bz);
            VF c = VM(tanh)((ai[i] + ci) + r * (ah[i] + ch));
            VF h = hp[0] ? VM(load)(hp[i] + u) : VM(splat)(0.f);
            VM(store)(hn[i] + u, (1.0f - z) * c + z * h);
        }
}

#undef VF
#undef VI
#undef VM
#undef VM_CAT
#undef VM_CAT2
