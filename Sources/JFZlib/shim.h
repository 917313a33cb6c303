// inflateInit2 is a macro (it passes ZLIB_VERSION and sizeof(z_stream) to
// inflateInit2_); Swift cannot see macros that take arguments, so wrap it.
#ifndef JOBFETCH_CZLIB_SHIM_H
#define JOBFETCH_CZLIB_SHIM_H
#include <zlib.h>

static inline int jf_inflate_init2(z_streamp strm, int window_bits) {
    return inflateInit2(strm, window_bits);
}
#endif
