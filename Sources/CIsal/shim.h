// Intel ISA-L's igzip: streaming inflate for gzip, zlib and raw deflate,
// about three times as fast as zlib's on the same input (Debian: libisal-dev).
#ifndef JOBFETCH_CISAL_SHIM_H
#define JOBFETCH_CISAL_SHIM_H
#include <isa-l/igzip_lib.h>
#endif
