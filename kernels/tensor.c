/* Tensor views and dtype conversions. */
#include "kernels/tensor.h"

#include "util/error.h"

size_t dtype_size(enum dtype dt)
{
    switch (dt) {
    case DT_F32: return 4;
    case DT_BF16: return 2;
    case DT_F16: return 2;
    case DT_I32: return 4;
    case DT_I64: return 8;
    case DT_U16: return 2;
    case DT_U8: return 1;
    }
    BUG("unknown dtype %d", (int)dt);
}

const char *dtype_name(enum dtype dt)
{
    switch (dt) {
    case DT_F32: return "float32";
    case DT_BF16: return "bfloat16";
    case DT_F16: return "float16";
    case DT_I32: return "int32";
    case DT_I64: return "int64";
    case DT_U16: return "uint16";
    case DT_U8: return "uint8";
    }
    return "unknown";
}

struct tensor tensor_make(void *data, enum dtype dt, enum device dev, int ndim, const int64_t *shape)
{
    struct tensor t = tensor_none();
    CHECK(ndim >= 0 && ndim <= TENSOR_MAX_DIMS);
    t.data = data;
    t.dtype = dt;
    t.device = dev;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

struct tensor tensor_1d(void *data, enum dtype dt, enum device dev, int64_t d0)
{
    return tensor_make(data, dt, dev, 1, &d0);
}

struct tensor tensor_2d(void *data, enum dtype dt, enum device dev, int64_t d0, int64_t d1)
{
    int64_t s[2] = {d0, d1};
    return tensor_make(data, dt, dev, 2, s);
}

int64_t tensor_numel(struct tensor t)
{
    int64_t n = 1;
    for (int i = 0; i < t.ndim; i++) n *= t.shape[i];
    return n;
}

size_t tensor_bytes(struct tensor t) { return (size_t)tensor_numel(t) * dtype_size(t.dtype); }

uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);      /* NaN */
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);     /* rounds to >= 65520: inf */
    if (absu < 0x38800000u) {                                       /* below 2^-14: subnormal */
        if (absu < 0x33000000u) return (uint16_t)sign;              /* below half of 2^-24 */
        uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(absu >> 23); /* 14..24: value = mant * 2^(exp-126-24+24) */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((absu >> 13) - (112u << 10));                    /* rebias exponent 127 -> 15 */
    uint32_t rem = absu & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400u));
            u = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void round_to_dtype(float *x, int64_t n, enum dtype dt)
{
    if (dt == DT_BF16) {
        for (int64_t i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
    } else if (dt == DT_F16) {
        for (int64_t i = 0; i < n; i++) x[i] = f16_to_f32(f32_to_f16(x[i]));
    } else if (dt != DT_F32) {
        BUG("round_to_dtype: %s is not a float type", dtype_name(dt));
    }
}
