#include "base/err.h"

#include <string.h>

const char *err_str(int code) {
  if (code == 0)
    return "success";
  switch (code) {
#define ERR_CASE(name, msg)                                                    \
  case ERR_##name:                                                             \
    return msg;
    ERR_MAP(ERR_CASE)
#undef ERR_CASE
  default:
    break;
  }
  if (code < 0 && code > ERR_BASE_)
    return strerror(-code);
  return "unknown error";
}
