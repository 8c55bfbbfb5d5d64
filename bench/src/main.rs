//! `bench`: measures lb against HAProxy, nginx and the wire (issue: bench). Not built yet.
fn main() {
    eprintln!("bench: not implemented yet; see the open bench issue");
    std::process::exit(2);
}
