pub mod detect;
pub mod scan;

pub fn x() {}
