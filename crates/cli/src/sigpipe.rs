//! A closed standard output ends the program quietly, as it does other Unix tools
//! (`strata lab run | head`): Rust ignores SIGPIPE, so a write to a closed pipe would
//! fail and `println!` panic; with the default action back, the process just ends.

#![allow(unsafe_code)]

pub(crate) fn restore_default() {
    // SAFETY: setting a signal's disposition to SIG_DFL touches no memory of ours; it is
    // done first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
