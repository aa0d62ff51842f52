#pragma once
#include <blkid.h>
