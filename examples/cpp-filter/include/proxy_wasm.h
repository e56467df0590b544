// The Proxy-Wasm ABI 0.2.1 host functions this filter uses. Kiln lets every
// proxy_* host function stay undefined at link time (it becomes an import
// from module "env"), so plain declarations are enough; extern "C" keeps
// their names unmangled.
#ifndef PROXY_WASM_H
#define PROXY_WASM_H

#include <cstddef>
#include <cstdint>

extern "C" {
enum { LOG_INFO = 2 };
enum { REQUEST_HEADERS = 0, RESPONSE_HEADERS = 2 };
enum { ACTION_CONTINUE = 0 };

uint32_t proxy_log(uint32_t level, const char *message, size_t size);
uint32_t proxy_get_header_map_pairs(uint32_t map, const char **data, size_t *size);
uint32_t proxy_add_header_map_value(uint32_t map, const char *key, size_t key_size,
                                    const char *value, size_t value_size);
}

#endif
