#pragma once
#include <libdevmapper.h>
