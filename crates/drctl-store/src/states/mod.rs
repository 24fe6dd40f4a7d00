//! Every state drctl stores or serves, as enums in one place: the spelling
//! of each variant is the one in the database and in the API's JSON.

/// Declares a state enum with what every state has: copied and compared
/// by value; one spelling (snake_case) for `Display`/`FromStr` (strum),
/// for JSON (serde) and for the OpenAPI schema (utoipa); its variants
/// listed (`VariantArray`). Storing it is a separate opt-in
/// ([`crate::stored_as_text!`]): the compliance verdicts are only served.
macro_rules! state_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variants:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            strum::Display,
            strum::EnumString,
            strum::AsRefStr,
            strum::IntoStaticStr,
            strum::VariantArray,
            utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        $vis enum $name { $($variants)* }
    };
}

mod alert;
mod audit;
mod compliance;
mod decision;
mod evidence;
mod monitor;
mod operation;
pub use alert::*;
pub use audit::*;
pub use compliance::*;
pub use decision::*;
pub use evidence::*;
pub use monitor::*;
pub use operation::*;
