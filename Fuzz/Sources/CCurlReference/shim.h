// Typed wrappers for libcurl's variadic entry points (curl_easy_setopt,
// curl_multi_setopt, curl_easy_getinfo), which Swift cannot call directly.
// One wrapper per argument type, as swift-corelibs-foundation's
// _CFURLSessionInterface does; each returns the libcurl code so the Swift
// side can throw instead of trapping.
#ifndef JOBFETCH_CCURL_SHIM_H
#define JOBFETCH_CCURL_SHIM_H
#include <curl/curl.h>

#pragma clang assume_nonnull begin

static inline CURLcode jf_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode jf_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode jf_easy_setopt_string(CURL *h, CURLoption o, const char *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode jf_easy_setopt_ptr(CURL *h, CURLoption o, void *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode jf_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *_Nullable v) { return curl_easy_setopt(h, o, v); }

typedef size_t (*jf_data_cb)(char *, size_t, size_t, void *);
static inline CURLcode jf_easy_setopt_datacb(CURL *h, CURLoption o, jf_data_cb v) { return curl_easy_setopt(h, o, v); }

typedef int (*jf_xferinfo_cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
static inline CURLcode jf_easy_setopt_xferinfo(CURL *h, CURLoption o, jf_xferinfo_cb v) { return curl_easy_setopt(h, o, v); }

static inline CURLcode jf_easy_getinfo_long(CURL *h, CURLINFO i, long *out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode jf_easy_getinfo_off(CURL *h, CURLINFO i, curl_off_t *out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode jf_easy_getinfo_string(CURL *h, CURLINFO i, char *_Nullable *_Nonnull out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode jf_easy_getinfo_ptr(CURL *h, CURLINFO i, void *_Nullable *_Nonnull out) { return curl_easy_getinfo(h, i, out); }

static inline CURLMcode jf_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

#pragma clang assume_nonnull end
#endif
