// libcurl, loaded on first use. Only `imagectl pull-*` needs it, and linking it pulls about 25
// shared libraries (TLS, HTTP/2, LDAP, Kerberos, SSH, IDN ...) into every imagectl process: their
// symbol lookups cost ~9 ms of CPU at each start, which `run` and `dissect` are measured on. So
// the executable does not link libcurl; curl_loader.c dlopen()s libcurl.so.4 the first time one
// of these functions is called. The header (libcurl4-openssl-dev) still gives the types.
//
// Also: curl_easy_setopt/curl_easy_getinfo are variadic, which Swift cannot call; the typed
// wrappers below (one per argument kind) are the only way in. Used by Sources/Pull/Bindings.
#pragma once
#include <curl/curl.h>

/// NULL when libcurl is loaded (it is loaded on the first call of any function here), else why
/// it could not be (dlopen's or dlsym's message). Every other function fails while this is set:
/// img_curl_global_init returns CURLE_FAILED_INIT and img_curl_easy_init NULL.
const char *img_curl_load_error(void);

CURLcode img_curl_global_init(long flags);
CURL *img_curl_easy_init(void);
void img_curl_easy_cleanup(CURL *handle);
CURLcode img_curl_easy_perform(CURL *handle);
const char *img_curl_easy_strerror(CURLcode code);
struct curl_slist *img_curl_slist_append(struct curl_slist *list, const char *text);
void img_curl_slist_free_all(struct curl_slist *list);

typedef size_t (*img_curl_data_callback)(char *data, size_t size, size_t count, void *context);
typedef int (*img_curl_xferinfo_callback)(void *context, curl_off_t download_total, curl_off_t download_now,
                                          curl_off_t upload_total, curl_off_t upload_now);

CURLcode img_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode img_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value);
CURLcode img_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode img_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode img_curl_setopt_data_callback(CURL *handle, CURLoption option, img_curl_data_callback value);
CURLcode img_curl_setopt_xferinfo_callback(CURL *handle, img_curl_xferinfo_callback value);
CURLcode img_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode img_curl_getinfo_offset(CURL *handle, CURLINFO info, curl_off_t *value);
CURLcode img_curl_getinfo_string(CURL *handle, CURLINFO info, char **value);
