/* cpu_vecmath.h — template of the cpu backend's transcendental row kernels (GELU-tanh and the
 * GRU gates) on GCC/Clang vectors of VM_W floats, compiled with the function attributes VM_ATTR
 * and names suffixed VM_SUF. cpu_backend.c includes it once per instruction set (portable SSE,
 * AVX2+FMA) and picks at run time; a wide pass is followed by a narrow one, then scalar tails. Cephes-style expf (relative error ~2e-7 over [-87, 88]);
 * tanh and sigmoid through it (abs error ~1e-7). No include guard: meant to be included more than once. */
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
    return z + x;
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

#undef VF
#undef VI
#undef VM
#undef VM_CAT
#undef VM_CAT2
