//! Every state drctl stores or serves, as enums in one place: the spelling
//! of each variant is the one in the database and in the API's JSON.
mod alert;
mod compliance;
mod evidence;
mod monitor;
mod operation;
pub use alert::*;
pub use compliance::*;
pub use evidence::*;
pub use monitor::*;
pub use operation::*;
