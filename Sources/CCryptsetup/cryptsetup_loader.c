// Loads libcryptsetup.so.12 on first use (see include/CCryptsetup.h for why it is not linked).
#include "CCryptsetup.h"

#include <CLibraryLoader.h>
#include <errno.h>

static struct {
    void (*set_log_callback)(struct crypt_device *, img_crypt_log_function, void *);
    int (*init)(struct crypt_device **, const char *);
    int (*init_data_device)(struct crypt_device **, const char *, const char *);
    int (*init_by_name)(struct crypt_device **, const char *);
    void (*free)(struct crypt_device *);
    int (*format)(struct crypt_device *, const char *, const char *, const char *, const char *, const char *,
                  size_t, void *);
    int (*load)(struct crypt_device *, const char *, void *);
    int (*get_verity_info)(struct crypt_device *, struct crypt_params_verity *);
    const char *(*get_uuid)(struct crypt_device *);
    int (*activate_by_volume_key)(struct crypt_device *, const char *, const char *, size_t, uint32_t);
    int (*activate_by_signed_key)(struct crypt_device *, const char *, const char *, size_t, const char *, size_t,
                                  uint32_t);
    int (*deactivate)(struct crypt_device *, const char *);
} api;

static const struct img_library_symbol symbols[] = {
    {(void **)&api.set_log_callback, "crypt_set_log_callback"},
    {(void **)&api.init, "crypt_init"},
    {(void **)&api.init_data_device, "crypt_init_data_device"},
    {(void **)&api.init_by_name, "crypt_init_by_name"},
    {(void **)&api.free, "crypt_free"},
    {(void **)&api.format, "crypt_format"},
    {(void **)&api.load, "crypt_load"},
    {(void **)&api.get_verity_info, "crypt_get_verity_info"},
    {(void **)&api.get_uuid, "crypt_get_uuid"},
    {(void **)&api.activate_by_volume_key, "crypt_activate_by_volume_key"},
    {(void **)&api.activate_by_signed_key, "crypt_activate_by_signed_key"},
    {(void **)&api.deactivate, "crypt_deactivate"},
};

static struct img_library library = IMG_LIBRARY("libcryptsetup.so.12", "libcryptsetup", symbols);

static void load(void) { img_library_load(&library); }

const char *img_crypt_load_error(void) { return img_library_error(&library, load); }

// Every entry point goes through img_crypt_load_error(), so none can call a NULL pointer.
#define READY() (img_crypt_load_error() == NULL)

void img_crypt_set_log_callback(struct crypt_device *cd, img_crypt_log_function log, void *usrptr) {
    if (READY()) api.set_log_callback(cd, log, usrptr);
}
int img_crypt_init(struct crypt_device **cd, const char *device) {
    return READY() ? api.init(cd, device) : -ELIBACC;
}
int img_crypt_init_data_device(struct crypt_device **cd, const char *device, const char *data_device) {
    return READY() ? api.init_data_device(cd, device, data_device) : -ELIBACC;
}
int img_crypt_init_by_name(struct crypt_device **cd, const char *name) {
    return READY() ? api.init_by_name(cd, name) : -ELIBACC;
}
void img_crypt_free(struct crypt_device *cd) {
    if (READY()) api.free(cd);
}
int img_crypt_format(struct crypt_device *cd, const char *type, const char *cipher, const char *cipher_mode,
                     const char *uuid, const char *volume_key, size_t volume_key_size, void *params) {
    return READY() ? api.format(cd, type, cipher, cipher_mode, uuid, volume_key, volume_key_size, params) : -ELIBACC;
}
int img_crypt_load(struct crypt_device *cd, const char *requested_type, void *params) {
    return READY() ? api.load(cd, requested_type, params) : -ELIBACC;
}
int img_crypt_get_verity_info(struct crypt_device *cd, struct crypt_params_verity *vp) {
    return READY() ? api.get_verity_info(cd, vp) : -ELIBACC;
}
const char *img_crypt_get_uuid(struct crypt_device *cd) {
    return READY() ? api.get_uuid(cd) : NULL;
}
int img_crypt_activate_by_volume_key(struct crypt_device *cd, const char *name, const char *volume_key,
                                     size_t volume_key_size, uint32_t flags) {
    return READY() ? api.activate_by_volume_key(cd, name, volume_key, volume_key_size, flags) : -ELIBACC;
}
int img_crypt_activate_by_signed_key(struct crypt_device *cd, const char *name, const char *volume_key,
                                     size_t volume_key_size, const char *signature, size_t signature_size,
                                     uint32_t flags) {
    return READY() ? api.activate_by_signed_key(cd, name, volume_key, volume_key_size, signature, signature_size, flags)
                   : -ELIBACC;
}
int img_crypt_deactivate(struct crypt_device *cd, const char *name) {
    return READY() ? api.deactivate(cd, name) : -ELIBACC;
}
