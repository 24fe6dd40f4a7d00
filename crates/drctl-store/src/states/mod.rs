mod operation;
pub use operation::*;
