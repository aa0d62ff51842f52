// CLibraryLoader: the dlopen-and-resolve step shared by CCryptsetup and CCurl, which load their
// library on first use instead of linking it (each of their headers says why). They are separate
// C targets, and a C target sees only the headers of the targets it depends on, so the shared
// step is a target of its own that both depend on. Nothing in Swift uses it directly.
#pragma once

#include <pthread.h>
#include <stddef.h>

/// One symbol to resolve: its name and where its address goes (the address of a function
/// pointer field, cast to void **).
struct img_library_symbol {
    void **slot;
    const char *name;
};

/// A library loaded on first use: what to load, and how loading went.
struct img_library {
    /// dlopen's argument, e.g. "libcurl.so.4"; `label` names it in the message when it is missing.
    const char *soname;
    const char *label;
    const struct img_library_symbol *symbols;
    size_t count;
    pthread_once_t once;
    int loaded;
    char error[512];
};

/// A static `struct img_library` for `soname` that resolves the `symbols` array.
#define IMG_LIBRARY(soname, label, symbols) \
    {soname, label, symbols, sizeof symbols / sizeof symbols[0], PTHREAD_ONCE_INIT, 0, {0}}

/// dlopen()s `library->soname` (RTLD_NOW | RTLD_LOCAL: the library's own dependencies stay out of
/// the global symbol scope) and dlsym()s every symbol into its slot. Sets `library->loaded`, or
/// leaves it 0 with a message in `library->error`: "cannot load LABEL: <dlerror>" or "SONAME lacks
/// SYMBOL" (slots before a missing symbol stay filled; callers check `loaded` first). Call it as
/// the pthread_once routine of `library->once`, through img_library_error().
void img_library_load(struct img_library *library);

/// Loads `library` once (`load` is a function that calls img_library_load on it: pthread_once
/// takes no argument) and returns NULL when it is loaded, else why not.
const char *img_library_error(struct img_library *library, void (*load)(void));
