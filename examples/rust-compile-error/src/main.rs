//! Deliberately broken: Kiln must report this build as `failed`, with
//! rustc's error in the log and as the one-line reason.
fn main() {
    let answer: u32 = "forty-two";
    println!("{}", answer);
}
