// Host functions of the Proxy-Wasm ABI 0.2.1. AssemblyScript imports a
// declared function from a module named after its file, so declaring them
// in env.ts makes them imports from module "env", as the ABI wants.

export declare function proxy_log(level: i32, message: usize, size: usize): i32;

export declare function proxy_add_header_map_value(
  map: i32,
  key: usize,
  keySize: usize,
  value: usize,
  valueSize: usize,
): i32;
