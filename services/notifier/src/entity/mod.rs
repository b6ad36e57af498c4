pub mod lock;
pub mod reminder;
pub mod run;
