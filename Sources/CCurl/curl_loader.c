// Loads libcurl.so.4 on first use (see include/CCurl.h for why it is not linked).
#include "CCurl.h"

#include <CLibraryLoader.h>

static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
} api;

static const struct img_library_symbol symbols[] = {
    {(void **)&api.global_init, "curl_global_init"},
    {(void **)&api.easy_init, "curl_easy_init"},
    {(void **)&api.easy_cleanup, "curl_easy_cleanup"},
    {(void **)&api.easy_perform, "curl_easy_perform"},
    {(void **)&api.easy_strerror, "curl_easy_strerror"},
    {(void **)&api.slist_append, "curl_slist_append"},
    {(void **)&api.slist_free_all, "curl_slist_free_all"},
    {(void **)&api.easy_setopt, "curl_easy_setopt"},
    {(void **)&api.easy_getinfo, "curl_easy_getinfo"},
};

static struct img_library library = IMG_LIBRARY("libcurl.so.4", "libcurl", symbols);

static void load(void) { img_library_load(&library); }

const char *img_curl_load_error(void) { return img_library_error(&library, load); }

// Every entry point goes through img_curl_load_error(), so none can call a NULL pointer.
#define READY() (img_curl_load_error() == NULL)

CURLcode img_curl_global_init(long flags) { return READY() ? api.global_init(flags) : CURLE_FAILED_INIT; }
CURL *img_curl_easy_init(void) { return READY() ? api.easy_init() : NULL; }
void img_curl_easy_cleanup(CURL *handle) { if (READY() && handle) api.easy_cleanup(handle); }
CURLcode img_curl_easy_perform(CURL *handle) { return READY() ? api.easy_perform(handle) : CURLE_FAILED_INIT; }
const char *img_curl_easy_strerror(CURLcode code) {
    return READY() ? api.easy_strerror(code) : library.error;
}
struct curl_slist *img_curl_slist_append(struct curl_slist *list, const char *text) {
    return READY() ? api.slist_append(list, text) : NULL;
}
void img_curl_slist_free_all(struct curl_slist *list) { if (READY() && list) api.slist_free_all(list); }

CURLcode img_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return READY() ? api.easy_setopt(handle, option, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value) {
    return READY() ? api.easy_setopt(handle, option, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return READY() ? api.easy_setopt(handle, option, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return READY() ? api.easy_setopt(handle, option, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_setopt_data_callback(CURL *handle, CURLoption option, img_curl_data_callback value) {
    return READY() ? api.easy_setopt(handle, option, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_setopt_xferinfo_callback(CURL *handle, img_curl_xferinfo_callback value) {
    return READY() ? api.easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return READY() ? api.easy_getinfo(handle, info, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_getinfo_offset(CURL *handle, CURLINFO info, curl_off_t *value) {
    return READY() ? api.easy_getinfo(handle, info, value) : CURLE_FAILED_INIT;
}
CURLcode img_curl_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return READY() ? api.easy_getinfo(handle, info, value) : CURLE_FAILED_INIT;
}
