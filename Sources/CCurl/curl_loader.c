// Loads libcurl.so.4 on first use (see include/CCurl.h for why it is not linked).
#include "CCurl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

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

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];
static int loaded;

#define RESOLVE(handle, field, symbol)                                                             \
    do {                                                                                           \
        *(void **)&api.field = dlsym(handle, symbol);                                              \
        if (!api.field) {                                                                          \
            snprintf(load_error, sizeof load_error, "libcurl.so.4 lacks %s", symbol);              \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void load(void) {
    // RTLD_LOCAL: libcurl's dependencies stay out of the global symbol scope.
    void *handle = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load libcurl: %s", why ? why : "dlopen failed");
        return;
    }
    RESOLVE(handle, global_init, "curl_global_init");
    RESOLVE(handle, easy_init, "curl_easy_init");
    RESOLVE(handle, easy_cleanup, "curl_easy_cleanup");
    RESOLVE(handle, easy_perform, "curl_easy_perform");
    RESOLVE(handle, easy_strerror, "curl_easy_strerror");
    RESOLVE(handle, slist_append, "curl_slist_append");
    RESOLVE(handle, slist_free_all, "curl_slist_free_all");
    RESOLVE(handle, easy_setopt, "curl_easy_setopt");
    RESOLVE(handle, easy_getinfo, "curl_easy_getinfo");
    loaded = 1;
}

const char *img_curl_load_error(void) {
    pthread_once(&load_once, load);
    return loaded ? NULL : load_error;
}

// Every entry point goes through img_curl_load_error(), so none can call a NULL pointer.
#define READY() (img_curl_load_error() == NULL)

CURLcode img_curl_global_init(long flags) { return READY() ? api.global_init(flags) : CURLE_FAILED_INIT; }
CURL *img_curl_easy_init(void) { return READY() ? api.easy_init() : NULL; }
void img_curl_easy_cleanup(CURL *handle) { if (READY() && handle) api.easy_cleanup(handle); }
CURLcode img_curl_easy_perform(CURL *handle) { return READY() ? api.easy_perform(handle) : CURLE_FAILED_INIT; }
const char *img_curl_easy_strerror(CURLcode code) {
    return READY() ? api.easy_strerror(code) : load_error;
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
