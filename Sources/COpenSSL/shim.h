// Only libcrypto's EVP digest interface is used (sha256 of published files);
// it is the non-deprecated OpenSSL 3 API and uses the CPU's SHA extensions.
#ifndef JOBFETCH_COPENSSL_SHIM_H
#define JOBFETCH_COPENSSL_SHIM_H
#include <openssl/evp.h>
#endif
