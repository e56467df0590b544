//! Generates the embedded network config (JSON) at build time, so the
//! repository stays small while the module carries a large config. The
//! content is deterministic: the same source always embeds the same network.
use std::fmt::Write as _;
use std::{env, fs, path::Path};

const DEPOTS: u32 = 400;
const LINKS_PER_DEPOT: u32 = 8;

fn main() {
    let mut json = String::from("{\"currency\":\"EUR\",\"depots\":[");
    for depot in 0..DEPOTS {
        let separator = if depot == 0 { "" } else { "," };
        write!(json, "{separator}\"depot-{depot}\"").expect("writing to a String cannot fail");
    }
    json.push_str("],\"links\":[\n");
    let mut state: u32 = 0x2545_f491;
    for from in 0..DEPOTS {
        for link in 0..LINKS_PER_DEPOT {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            // A ring keeps the network connected; the other links are random.
            let to = if link == 0 { (from + 1) % DEPOTS } else { state % DEPOTS };
            let separator = if from == 0 && link == 0 { "" } else { ",\n" };
            write!(json, "{separator}{{\"from\":\"depot-{from}\",\"to\":\"depot-{to}\",\"cost_cents\":{}}}", 100 + (state >> 8) % 5_000)
                .expect("writing to a String cannot fail");
        }
    }
    json.push_str("\n]}\n");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("network.json");
    fs::write(out, json).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed=build.rs");
}
