//! Password strength: Coder's validator (spec/coder-api.md §5.1), and an optional stricter
//! policy on top of it (`[passwords]` `min_length`, `blocklist`, `reject_user_info`).
//!
//! # Coder's rule
//! Coder calls `wagslane/go-password-validator` v0.3.0 with a minimum of 52 bits, then refuses
//! more than 64 characters. [`coder_verdict`] reproduces that library step by step, quirks
//! included, because a different verdict near the boundary would be an incompatibility:
//!
//! - The base is the sum of the character pools present (lowercase 26, uppercase 26, digits 10,
//!   `!@$&*` 5, `_-., ` 5, ``"#%'()+/:;<=>?[\]^{|}~`` 22), plus 1 for each distinct character in
//!   no pool. The backtick is in no pool: the library's pool is a Go raw string, which cannot
//!   hold one, so it counts as a character of its own (the spec's summary lists it).
//! - The length is taken after dropping characters repeated more than twice in a row, then
//!   after the library's sequence pass for `0123456789`, `qwertyuiop`, `asdfghjkl`, `zxcvbnm`,
//!   the alphabet and their reverses. That pass compares characters exactly (the library does
//!   not fold case, so `ABCDEF` is not shortened), and after each scan of a sequence it steps
//!   over one character, so a run that starts right after a matched character may survive
//!   (`xabc` keeps all four). The spec summarises it as "runs longer than 2, keeping 2".
//! - The remaining length is Go's `len` of the string: UTF-8 bytes, so a non-ASCII character
//!   counts 2 to 4 times here while the pools count it once, as a distinct character.
//! - entropy = log2(base) added up once per unit of length (the library's `logPow`), valid iff
//!   at least 52.
//!
//! The 64-character maximum counts Unicode scalar values, as the rest of Portcullis does.
//!
//! # Stricter policy
//! Off by default, so that Portcullis answers as Coder does. When on, [`PasswordPolicy::check`]
//! applies Coder's rule first (its detail text wins), then the minimum length, the list of
//! common passwords, and the user's own name and email local part.
//!
//! The bundled list (`strength/common-passwords.txt`) is the 10,000 most frequent passwords
//! of the `passwords` frequency list shipped with zxcvbn (Dropbox; the Python port 4.5.0,
//! MIT licence), itself ranked from leaked-password corpora. It is compared case-insensitively.

use std::collections::HashSet;
use std::sync::OnceLock;

pub use crate::config::{PasswordPolicy, MAX_PASSWORD_CHARS};

/// Coder's minimum entropy in bits.
pub const MIN_ENTROPY_BITS: f64 = 52.0;

/// The shortest username or email local part that `reject_user_info` looks for: shorter ones
/// (`al`, `j`) would refuse too many unrelated passwords.
pub const MIN_USER_INFO_CHARS: usize = 3;

const REPLACE_CHARS: &str = "!@$&*";
const SEP_CHARS: &str = "_-., ";
const OTHER_SPECIAL_CHARS: &str = "\"#%'()+/:;<=>?[\\]^{|}~";
const LOWER_CHARS: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER_CHARS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGIT_CHARS: &str = "0123456789";

/// The sequences of the library's `getLength`, in its order; each is also applied reversed,
/// after all of these.
const SEQUENCES: [&str; 5] = [
    "0123456789",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "abcdefghijklmnopqrstuvwxyz",
];

const COMMON_PASSWORDS: &str = include_str!("strength/common-passwords.txt");

/// Who a password is for, when that is known: what `reject_user_info` looks for.
#[derive(Debug, Clone, Copy)]
pub struct UserInfo<'a> {
    /// The username.
    pub username: &'a str,
    /// The email address; only its local part (before the last `@`) is used.
    pub email: &'a str,
}

/// Which character pools a password uses.
#[derive(Debug, Default, Clone, Copy)]
struct Pools {
    replace: bool,
    sep: bool,
    other_special: bool,
    lower: bool,
    upper: bool,
    digits: bool,
}

// === impl PasswordPolicy ===

// The data type lives in `config` (layer 1); the check that applies it lives here, with the
// strength rules it needs.
impl PasswordPolicy {
    /// Why `password` is refused, as the detail text shown to the caller, or `Ok`. Coder's
    /// rule comes first, so its text is what a Coder client expects; then the stricter rules
    /// in the order `min_length`, `blocklist`, `reject_user_info`. Without `user`,
    /// `reject_user_info` has nothing to compare and is skipped.
    ///
    /// The text never contains the password.
    pub fn check(&self, password: &str, user: Option<UserInfo<'_>>) -> Result<(), String> {
        coder_verdict(password)?;
        if self.min_length > 0 && password.chars().count() < self.min_length {
            return Err(format!(
                "password must be at least {} characters",
                self.min_length
            ));
        }
        if self.blocklist && is_common(password) {
            return Err(
                "password is too common: it is on the list of most used passwords".to_owned(),
            );
        }
        if let (true, Some(user)) = (self.reject_user_info, user) {
            let lowered = password.to_lowercase();
            let contains = |part: &str| {
                part.chars().count() >= MIN_USER_INFO_CHARS
                    && lowered.contains(&part.to_lowercase())
            };
            if contains(user.username) {
                return Err("password must not contain the username".to_owned());
            }
            let local = user.email.rsplit_once('@').map_or(user.email, |(l, _)| l);
            if contains(local) {
                return Err("password must not contain the email address".to_owned());
            }
        }
        Ok(())
    }
}

// === impl Pools ===

impl Pools {
    fn of(password: &str) -> Self {
        let mut pools = Pools::default();
        for c in password.chars() {
            pools.add(c);
        }
        pools
    }

    /// Marks `c`'s pool; `false` when it is in none.
    fn add(&mut self, c: char) -> bool {
        let flag = if REPLACE_CHARS.contains(c) {
            &mut self.replace
        } else if SEP_CHARS.contains(c) {
            &mut self.sep
        } else if OTHER_SPECIAL_CHARS.contains(c) {
            &mut self.other_special
        } else if LOWER_CHARS.contains(c) {
            &mut self.lower
        } else if UPPER_CHARS.contains(c) {
            &mut self.upper
        } else if DIGIT_CHARS.contains(c) {
            &mut self.digits
        } else {
            return false;
        };
        *flag = true;
        true
    }
}

/// Coder's verdict (`userpassword.Validate`): the entropy rule, then at most 64 characters.
/// The error is Coder's detail text, exactly.
pub fn coder_verdict(password: &str) -> Result<(), String> {
    if entropy(password) < MIN_ENTROPY_BITS {
        return Err(insecure(Pools::of(password)));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(format!(
            "password must be no more than {MAX_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

/// The library's entropy estimate in bits (`GetEntropy`).
pub fn entropy(password: &str) -> f64 {
    let bits_per_unit = go_log2(base(password) as f64);
    // Summed once per unit, as the library's logPow does, so rounding matches near 52.
    (0..effective_length(password)).fold(0.0, |total, _| total + bits_per_unit)
}

/// `getBase`: the pools present, plus one per distinct character in none.
fn base(password: &str) -> usize {
    let distinct: HashSet<char> = password.chars().collect();
    let mut pools = Pools::default();
    let outside = distinct.into_iter().filter(|&c| !pools.add(c)).count();
    let sizes = [
        (pools.replace, REPLACE_CHARS.len()),
        (pools.sep, SEP_CHARS.len()),
        (pools.other_special, OTHER_SPECIAL_CHARS.len()),
        (pools.lower, LOWER_CHARS.len()),
        (pools.upper, UPPER_CHARS.len()),
        (pools.digits, DIGIT_CHARS.len()),
    ];
    outside
        + sizes
            .iter()
            .filter(|(present, _)| *present)
            .map(|(_, n)| n)
            .sum::<usize>()
}

/// `getLength`: repeats, then each sequence and each reversed sequence; UTF-8 bytes of what is
/// left (Go's `len` of a string).
fn effective_length(password: &str) -> usize {
    let mut chars = without_long_repeats(password.chars().collect());
    for seq in SEQUENCES {
        chars = without_sequence_runs(chars, &seq.chars().collect::<Vec<_>>());
    }
    for seq in SEQUENCES {
        chars = without_sequence_runs(chars, &seq.chars().rev().collect::<Vec<_>>());
    }
    chars.iter().map(|c| c.len_utf8()).sum()
}

/// `removeMoreThanTwoRepeatingChars`. Go starts `prev` and `prevPrev` at rune 0, so leading
/// NULs count as repeats of them; kept for identical verdicts.
fn without_long_repeats(mut chars: Vec<char>) -> Vec<char> {
    let (mut prev_prev, mut prev) = ('\0', '\0');
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == prev && c == prev_prev {
            chars.remove(i);
        } else {
            i += 1;
        }
        prev_prev = prev;
        prev = c;
    }
    chars
}

/// `removeMoreThanTwoFromSequence`, transcribed loop for loop: for each position, one scan of
/// the sequence advances through the password while they agree and deletes what agrees past
/// the second character; the match count carries over between positions, and the outer step
/// skips one character after each scan.
fn without_sequence_runs(mut chars: Vec<char>, seq: &[char]) -> Vec<char> {
    let mut matches = 0;
    let mut i = 0;
    while i < chars.len() {
        for &s in seq {
            if i >= chars.len() {
                break;
            }
            if chars[i] != s {
                matches = 0;
                continue;
            }
            matches += 1;
            if matches > 2 {
                chars.remove(i);
            } else {
                i += 1;
            }
        }
        i += 1;
    }
    chars
}

/// Go's `math.Log2`: exact for powers of two, otherwise `ln(frac) / ln 2 + exp` of the
/// mantissa and exponent, which can differ from a direct `log2` in the last bit.
fn go_log2(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return x.log2();
    }
    // frexp for a positive finite x: x = frac × 2^exp with frac in [0.5, 1). The bases here are
    // small integers, never subnormal.
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    frac.ln() * (1.0 / std::f64::consts::LN_2) + exp as f64
}

/// The library's advice: which pools to add, in its order.
fn insecure(pools: Pools) -> String {
    let mut advice = Vec::new();
    if !(pools.other_special && pools.sep && pools.replace) {
        advice.push("including more special characters");
    }
    if !pools.lower {
        advice.push("using lowercase letters");
    }
    if !pools.upper {
        advice.push("using uppercase letters");
    }
    if !pools.digits {
        advice.push("using numbers");
    }
    if advice.is_empty() {
        return "insecure password, try using a longer password".to_owned();
    }
    format!(
        "insecure password, try {} or using a longer password",
        advice.join(", ")
    )
}

/// Whether `password` is on the bundled list, case-insensitively.
fn is_common(password: &str) -> bool {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let list = LIST.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    });
    list.contains(password.to_lowercase().as_str())
}

#[cfg(test)]
mod tests;
