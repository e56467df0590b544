/* A proxy-wasm HTTP filter on the raw ABI: adds `x-kiln-c: hello` to every
 * request. Kiln builds it as a reactor and exports each proxy_on_* /
 * proxy_abi_version_* function defined here (see src/languages/c/README.md). */
#include <stdlib.h>
#include <string.h>

#include "proxy_wasm.h"

static void log_info(const char *message) { proxy_log(LOG_INFO, message, strlen(message)); }

void proxy_abi_version_0_2_1(void) {}

/* The host copies headers, bodies and configuration into memory we hand out. */
void *proxy_on_memory_allocate(size_t size) { return malloc(size); }

void proxy_on_context_create(uint32_t context_id, uint32_t root_context_id) {
    (void)context_id;
    (void)root_context_id;
}

uint32_t proxy_on_vm_start(uint32_t root_context_id, uint32_t vm_configuration_size) {
    (void)root_context_id;
    (void)vm_configuration_size;
    log_info("c-filter: started");
    return 1;
}

uint32_t proxy_on_configure(uint32_t root_context_id, uint32_t plugin_configuration_size) {
    (void)root_context_id;
    (void)plugin_configuration_size;
    return 1;
}

uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t headers, uint32_t end_of_stream) {
    (void)context_id;
    (void)headers;
    (void)end_of_stream;
    static const char key[] = "x-kiln-c";
    static const char value[] = "hello";
    proxy_add_header_map_value(REQUEST_HEADERS, key, sizeof key - 1, value, sizeof value - 1);
    log_info("c-filter: added x-kiln-c to the request");
    return ACTION_CONTINUE;
}

uint32_t proxy_on_done(uint32_t context_id) {
    (void)context_id;
    return 1;
}

void proxy_on_delete(uint32_t context_id) { (void)context_id; }
