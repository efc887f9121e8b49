//! `sqlx::migrate!` embeds `schema/migrations` at compile time; rebuild when they change.

fn main() {
    println!("cargo:rerun-if-changed=../schema/migrations");
}
