#pragma once
#include <btrfsutil.h>
