import Glibc

// errno values used in comparisons, from Glibc, so the module above Bindings needs no Glibc.
let ENODEV_ = ENODEV
let EINVAL_ = EINVAL
let EOPNOTSUPP_ = EOPNOTSUPP
let EEXIST_ = EEXIST
