//! A function: reads `{"name": "..."}` on stdin, answers a greeting as JSON.
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

#[derive(Deserialize)]
struct Request {
    name: String,
}

#[derive(Serialize)]
struct Response {
    greeting: String,
    length: usize,
}

fn main() {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).expect("stdin is readable");
    let request: Request = match serde_json::from_str(&input) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("bad input: {}", error);
            std::process::exit(2);
        }
    };
    let response = Response {
        greeting: format!("Hello, {}!", request.name),
        length: request.name.chars().count(),
    };
    let mut stdout = io::stdout();
    serde_json::to_writer(&mut stdout, &response).expect("stdout is writable");
    stdout.write_all(b"\n").expect("stdout is writable");
}
