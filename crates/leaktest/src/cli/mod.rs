//! One module per subcommand: argument parsing and wiring only; the work is
//! done by the library crates.

pub mod docs;
pub mod finrst;
pub mod lab;
pub mod privsep;
pub mod probe;
pub mod report;
pub mod timeline;
pub mod tor;
pub mod watch;
