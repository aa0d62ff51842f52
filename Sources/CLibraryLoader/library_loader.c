// See include/CLibraryLoader.h.
#include "CLibraryLoader.h"

#include <dlfcn.h>
#include <stdio.h>

void img_library_load(struct img_library *library) {
    void *handle = dlopen(library->soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        snprintf(library->error, sizeof library->error, "cannot load %s: %s", library->label,
                 why ? why : "dlopen failed");
        return;
    }
    for (size_t i = 0; i < library->count; i++) {
        const struct img_library_symbol *symbol = &library->symbols[i];
        *symbol->slot = dlsym(handle, symbol->name);
        if (!*symbol->slot) {
            snprintf(library->error, sizeof library->error, "%s lacks %s", library->soname, symbol->name);
            return;
        }
    }
    library->loaded = 1;
}

const char *img_library_error(struct img_library *library, void (*load)(void)) {
    pthread_once(&library->once, load);
    return library->loaded ? NULL : library->error;
}
