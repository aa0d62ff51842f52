#pragma once
// libcurl's curl_easy_setopt/curl_easy_getinfo are variadic, which Swift cannot call; these
// typed wrappers (one per argument kind) are the only way in. Used by Sources/Pull/Bindings.
#include <curl/curl.h>

typedef size_t (*img_curl_data_callback)(char *data, size_t size, size_t count, void *context);
typedef int (*img_curl_xferinfo_callback)(void *context, curl_off_t download_total, curl_off_t download_now,
                                          curl_off_t upload_total, curl_off_t upload_now);

static inline CURLcode img_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode img_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode img_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode img_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode img_curl_setopt_data_callback(CURL *handle, CURLoption option, img_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode img_curl_setopt_xferinfo_callback(CURL *handle, img_curl_xferinfo_callback value) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, value);
}
static inline CURLcode img_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode img_curl_getinfo_offset(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode img_curl_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}
