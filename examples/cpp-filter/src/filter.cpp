// A proxy-wasm HTTP filter in C++17 on the raw ABI, using the standard
// library (libc++): it reads the request headers into a std::vector, sorts
// their names, and adds `x-kiln-cpp: <distinct header names>` plus
// `x-kiln-agent: <user-agent or "none">` (a std::optional) to the request.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "proxy_wasm.h"

namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;

void log_info(const std::string &message) { proxy_log(LOG_INFO, message.data(), message.size()); }

uint32_t read_u32(const char *at) {
    uint32_t value;
    std::memcpy(&value, at, sizeof value);
    return value;
}

// The ABI's serialized map: a count, then each key and value size, then
// the keys and values, each followed by a NUL byte.
Headers parse_pairs(const char *data, size_t size) {
    Headers pairs;
    if (size < 4) return pairs;
    const uint32_t count = read_u32(data);
    size_t sizes = 4;
    size_t strings = 4 + size_t{count} * 8;
    for (uint32_t index = 0; index < count && strings <= size; ++index, sizes += 8) {
        const uint32_t key_size = read_u32(data + sizes);
        const uint32_t value_size = read_u32(data + sizes + 4);
        if (strings + key_size + value_size + 2 > size) break;
        std::string key(data + strings, key_size);
        strings += key_size + 1;
        std::string value(data + strings, value_size);
        strings += value_size + 1;
        pairs.emplace_back(std::move(key), std::move(value));
    }
    return pairs;
}

std::optional<std::string> find_header(const Headers &headers, const std::string &name) {
    auto found = std::find_if(headers.begin(), headers.end(), [&](const auto &pair) { return pair.first == name; });
    if (found == headers.end()) return std::nullopt;
    return found->second;
}

void add_request_header(const std::string &key, const std::string &value) {
    proxy_add_header_map_value(REQUEST_HEADERS, key.data(), key.size(), value.data(), value.size());
}

// Requests seen per context: a container living across callbacks.
std::map<uint32_t, size_t> header_counts;

}  // namespace

extern "C" {

void proxy_abi_version_0_2_1(void) {}

// The host copies headers, bodies and configuration into memory we hand out.
void *proxy_on_memory_allocate(size_t size) { return std::malloc(size); }

void proxy_on_context_create(uint32_t, uint32_t) {}

uint32_t proxy_on_vm_start(uint32_t, uint32_t) {
    log_info(std::string("cpp-filter: started (C++") + std::to_string(__cplusplus / 100 % 100) + ")");
    return 1;
}

uint32_t proxy_on_configure(uint32_t, uint32_t) { return 1; }

uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t, uint32_t) {
    const char *data = nullptr;
    size_t size = 0;
    Headers headers;
    if (proxy_get_header_map_pairs(REQUEST_HEADERS, &data, &size) == 0 && data != nullptr) {
        headers = parse_pairs(data, size);
        std::free(const_cast<char *>(data));
    }
    std::vector<std::string> names;
    std::transform(headers.begin(), headers.end(), std::back_inserter(names), [](const auto &pair) { return pair.first; });
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    header_counts[context_id] = names.size();
    add_request_header("x-kiln-cpp", std::to_string(names.size()));
    add_request_header("x-kiln-agent", find_header(headers, "user-agent").value_or("none"));
    log_info("cpp-filter: " + std::to_string(names.size()) + " distinct request headers");
    return ACTION_CONTINUE;
}

uint32_t proxy_on_done(uint32_t context_id) {
    header_counts.erase(context_id);
    return 1;
}

void proxy_on_delete(uint32_t) {}

}  // extern "C"
