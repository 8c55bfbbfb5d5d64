//! Host-side stub so that `lb-user` can name this crate as a build dependency (which makes cargo
//! rebuild the daemon when the program changes). The program itself is `src/main.rs`.
#![no_std]
