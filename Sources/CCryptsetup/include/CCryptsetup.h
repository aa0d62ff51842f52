// libcryptsetup, loaded on first use. Only the verity cross-check and kernel dm-verity activation
// need it, and linking it brings libdevmapper, libcrypto, libargon2, libjson-c, libudev,
// libselinux and more into every imagectl process (~4 ms of symbol lookups at each start). So the
// executable does not link it; cryptsetup_loader.c dlopen()s libcryptsetup.so.12 the first time
// one of these functions is called. The header (libcryptsetup-dev) still gives the types.
// Each img_crypt_X has crypt_X's signature and meaning.
#pragma once
#include <libcryptsetup.h>

/// NULL when libcryptsetup is loaded (on the first call of any function here), else why not.
/// While it is set, the int-returning functions return -ELIBACC and the others do nothing.
const char *img_crypt_load_error(void);

typedef void (*img_crypt_log_function)(int level, const char *msg, void *usrptr);

void img_crypt_set_log_callback(struct crypt_device *cd, img_crypt_log_function log, void *usrptr);
int img_crypt_init(struct crypt_device **cd, const char *device);
int img_crypt_init_data_device(struct crypt_device **cd, const char *device, const char *data_device);
int img_crypt_init_by_name(struct crypt_device **cd, const char *name);
void img_crypt_free(struct crypt_device *cd);
int img_crypt_format(struct crypt_device *cd, const char *type, const char *cipher, const char *cipher_mode,
                     const char *uuid, const char *volume_key, size_t volume_key_size, void *params);
int img_crypt_load(struct crypt_device *cd, const char *requested_type, void *params);
int img_crypt_get_verity_info(struct crypt_device *cd, struct crypt_params_verity *vp);
const char *img_crypt_get_uuid(struct crypt_device *cd);
int img_crypt_activate_by_volume_key(struct crypt_device *cd, const char *name, const char *volume_key,
                                     size_t volume_key_size, uint32_t flags);
int img_crypt_activate_by_signed_key(struct crypt_device *cd, const char *name, const char *volume_key,
                                     size_t volume_key_size, const char *signature, size_t signature_size,
                                     uint32_t flags);
int img_crypt_deactivate(struct crypt_device *cd, const char *name);
