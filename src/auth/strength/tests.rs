//! The validator against `wagslane/go-password-validator` v0.3.0 as Coder calls it: each row's
//! entropy and verdict were produced by that library (Go 1.19, `GetEntropy` and `Validate(p,
//! 52)`), with Coder's 64-character maximum applied after it. An empty detail means valid.

use super::*;

/// (password, the library's entropy, Coder's detail or "" when valid). The first nine are the
/// reference verdicts of spec §5.1.
const VERDICTS: &[(&str, f64, &str)] = &[
    ("pass", 18.801758872564367, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("password", 37.603517745128734, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("hunter2", 36.18947501009619, "insecure password, try including more special characters, using uppercase letters or using a longer password"),
    ("notstrong", 42.303957463269825, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("Password1234", 59.54196310386876, ""),
    ("MySecurePassword!", 99.15913024080062, ""),
    ("SomeSecurePassword!", 110.82491026913011, ""),
    ("PasswordSecured123!", 109.18960542823991, ""),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 9.400879436282183, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("", 0.0, "insecure password, try including more special characters, using lowercase letters, using uppercase letters, using numbers or using a longer password"),
    ("a", 4.700439718141092, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("aaaa", 9.400879436282183, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("bbbbbbbaaaaaaaaa", 18.801758872564367, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("11112222", 13.287712379549449, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("aa123456", 20.67970000576925, "insecure password, try including more special characters, using uppercase letters or using a longer password"),
    ("876543", 6.643856189774724, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("qwerty123456z", 25.84962500721156, "insecure password, try including more special characters, using uppercase letters or using a longer password"),
    ("12345678", 6.643856189774724, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("abcqwertyabc", 32.90307802698764, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("abcdefghijklmnopqrstuvwxyz", 28.20263830884655, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("zyxwvutsrqponmlkjihgfedcba", 28.20263830884655, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 122.21143267166846, ""),
    ("xabcdefghijk", 28.20263830884655, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("qwertyuiopasdfghjklzxcvbnm", 28.20263830884655, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("mnbvcxzlkjhgfdsapoiuytrewq", 28.20263830884655, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("0123456789", 6.643856189774724, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("9876543210", 6.643856189774724, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("Tr0ub4dor&3", 66.7269810950355, ""),
    ("correct horse battery staple", 138.7174966908325, ""),
    ("CorrectHorseBatteryStaple", 142.51099295352736, ""),
    ("aGoo0dMi#oFChaR2", 102.27707876446017, ""),
    ("mypass", 28.20263830884655, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("MYPASS", 28.20263830884655, "insecure password, try including more special characters, using lowercase letters, using numbers or using a longer password"),
    ("1234567890123456", 16.609640474436812, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("!@$&*_-., ", 33.219280948873624, "insecure password, try including more special characters, using lowercase letters, using uppercase letters, using numbers or using a longer password"),
    ("\"#%'()+/:;<=>?[\\]^{|}~", 98.10749561002054, ""),
    ("`~`~`~`~`~`~", 54.28274347268417, ""),
    ("pässwörd", 48.07354922057605, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("пароль", 31.019550008653866, "insecure password, try including more special characters, using lowercase letters, using uppercase letters, using numbers or using a longer password"),
    ("пароль123Пароль", 106.27403387250888, ""),
    ("日本語のパスワード", 85.58797503894245, ""),
    ("🔐🔑🗝️🔒", 44.11663380285988, "insecure password, try including more special characters, using lowercase letters, using uppercase letters, using numbers or using a longer password"),
    ("ñandú-Ñandú-42", 98.26976913547135, ""),
    ("Zz9!Zz9!Zz9!", 72.79307028549327, ""),
    ("aaaaaaaaaaaaaaaaaaaaBBBBBBBBBB1!", 36.396535142746636, "insecure password, try including more special characters or using a longer password"),
    ("Aa1!xxxxxxxxxx", 36.396535142746636, "insecure password, try including more special characters or using a longer password"),
    ("Ab1!Ab1!Ab1!Ab1!", 97.05742704732437, ""),
    ("P@ssw0rd", 48.528713523662184, "insecure password, try including more special characters or using a longer password"),
    ("P@ssw0rd2024!", 78.85915947595105, ""),
    ("letmein", 32.90307802698764, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("iloveyou", 37.603517745128734, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("Summer2024", 59.54196310386876, ""),
    ("Summer2024!", 66.7269810950355, ""),
    ("summer2024!", 58.933072050798934, ""),
    ("qwertyQWERTY123!", 66.7269810950355, ""),
    ("asdfASDF1234!", 54.59480271411996, ""),
    ("zxcvbnmZXCVBNM", 51.303957463269825, "insecure password, try including more special characters, using numbers or using a longer password"),
    ("PasswordPassword", 91.2070354902575, ""),
    ("Kx8#mQ2$vL9@", 77.70880117159679, ""),
    ("abcABC123!@#", 64.75733430966399, ""),
    ("lowercaseonlybutlong", 94.00879436282187, ""),
    ("UPPERCASEONLYBUTLONG", 94.00879436282187, ""),
    ("1234509876123450987612345", 46.50699332842307, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("MixedCase With Spaces", 122.49069029745961, ""),
    ("with_under-score.dot,comma space", 158.53428193237994, ""),
    ("abc", 9.400879436282183, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("cba", 9.400879436282183, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("321", 6.643856189774724, "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"),
    ("Mn9-pQ7_rS5.", 72.79307028549327, ""),
    ("a1b2c3d4e5f6g7h8", 82.71880002307697, ""),
    ("a!A1", 24.26435676183109, "insecure password, try including more special characters or using a longer password"),
    ("𝔘𝔫𝔦𝔠𝔬𝔡𝔢𝔓𝔞𝔰𝔰", 146.1648361750441, ""),
    ("éééééééééé", 0.0, "insecure password, try including more special characters, using lowercase letters, using uppercase letters, using numbers or using a longer password"),
    ("ÉtéÀParis2024", 96.35788500845526, ""),
    ("Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!", 388.22970818929747, ""),
    ("Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Xy7!Z", 394.29579737975524, "password must be no more than 64 characters"),
    ("\u{0}\u{0}\u{0}abc", 9.509775004326936, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("a\tb\tc\td\te", 42.79398751947122, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("ABCDEFabcdef123456", 59.54196310386876, ""),
    ("fedcbaFEDCBA654321", 59.54196310386876, ""),
    ("poiuytPOIUYT", 45.603517745128734, "insecure password, try including more special characters, using numbers or using a longer password"),
    ("lkjhgfdsa", 9.400879436282183, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("mnbvcxz", 9.400879436282183, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("Correct-Horse-7", 90.9913378568666, ""),
    ("ThisIsALongerPassphraseWithoutDigits", 205.21582985307944, ""),
    ("thisisalongerpassphrasewithoutdigits1", 191.28722505336563, ""),
    ("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 9.400879436282183, "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"),
    ("Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!", 388.22970818929747, ""),
    ("Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!Aa1!B", 394.29579737975524, "password must be no more than 64 characters"),
    ("üüüüüüüüüüAa1!", 48.69970273000271, "insecure password, try including more special characters or using a longer password"),
    ("日本日本日本日本日本日本", 36.0, "insecure password, try including more special characters, using lowercase letters, using uppercase letters, using numbers or using a longer password"),
    ("Pa55-word", 54.59480271411996, ""),
    ("Pa55-word!", 61.699250014423114, ""),
    ("Pa55-word!#", 72.10047736845401, ""),
];

#[test]
fn verdicts_and_entropy_match_the_go_library() {
    for &(password, bits, detail) in VERDICTS {
        let got = entropy(password);
        assert!(
            (got - bits).abs() < 1e-9,
            "{password:?}: entropy {got}, the library says {bits}"
        );
        let want = if detail.is_empty() {
            Ok(())
        } else {
            Err(detail.to_owned())
        };
        assert_eq!(coder_verdict(password), want, "{password:?}");
    }
}

#[test]
fn reference_verdicts_of_the_spec() {
    let rounded = |p: &str| (entropy(p) * 10.0).round() / 10.0;
    assert_eq!(rounded("pass"), 18.8);
    assert_eq!(rounded("password"), 37.6);
    assert_eq!(rounded("hunter2"), 36.2);
    assert_eq!(rounded("Password1234"), 59.5);
    for weak in ["pass", "password", "hunter2", "notstrong"] {
        assert!(coder_verdict(weak).is_err(), "{weak}");
    }
    for strong in [
        "Password1234",
        "MySecurePassword!",
        "SomeSecurePassword!",
        "PasswordSecured123!",
    ] {
        assert_eq!(coder_verdict(strong), Ok(()), "{strong}");
    }
    // 65 × `a`: the entropy error is reported, not the length error.
    let err = coder_verdict(&"a".repeat(65)).expect_err("weak");
    assert!(err.starts_with("insecure password"), "{err}");
}

#[test]
fn the_library_helpers_behave_as_its_own_tests_say() {
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    let seq = |s: &str, q: &str| {
        without_sequence_runs(chars(s), &chars(q))
            .into_iter()
            .collect::<String>()
    };
    assert_eq!(seq("12345678", "0123456789"), "12");
    assert_eq!(seq("abcqwertyabc", "qwertyuiop"), "abcqwabc");
    assert_eq!(seq("", "12345"), "");
    // The step after each scan: a run right after a matched character survives.
    assert_eq!(seq("xabc", "abcdefghijklmnopqrstuvwxyz"), "xabc");
    // Exact comparison: upper case is not folded.
    assert_eq!(seq("ABCDEF", "abcdefghijklmnopqrstuvwxyz"), "ABCDEF");
    let rep = |s: &str| {
        without_long_repeats(chars(s))
            .into_iter()
            .collect::<String>()
    };
    assert_eq!(rep("aaaa"), "aa");
    assert_eq!(rep("bbbbbbbaaaaaaaaa"), "bbaa");
    assert_eq!(rep("ab"), "ab");
    assert_eq!(rep(""), "");
    for (p, n) in [
        ("aaaa", 2),
        ("11112222", 4),
        ("aa123456", 4),
        ("876543", 2),
        ("qwerty123456z", 5),
        // UTF-8 bytes, as Go's len: 12 characters of 3 bytes.
        ("日本日本日本日本日本日本", 36),
    ] {
        assert_eq!(effective_length(p), n, "{p:?}");
    }
    assert_eq!(base("abcd"), 26);
    assert_eq!(base("abcdA"), 52);
    assert_eq!(base("^_"), 27);
    assert_eq!(base("!"), 5);
    assert_eq!(base("123ü"), 11);
    assert_eq!(base("`"), 1, "the backtick is in no pool");
}

#[test]
fn the_maximum_counts_characters_and_follows_the_entropy_rule() {
    let strong64 = "Kx8#mQ2$vL9@".repeat(5) + "Kx8#";
    assert_eq!(strong64.chars().count(), 64);
    assert_eq!(coder_verdict(&strong64), Ok(()));
    assert_eq!(
        coder_verdict(&format!("{strong64}!")),
        Err("password must be no more than 64 characters".to_owned())
    );
    // 64 two-byte characters are 64 characters, not 128.
    let wide = "ñÉ9!".repeat(16);
    assert_eq!(coder_verdict(&wide), Ok(()));
}

#[test]
fn the_missing_pools_come_in_the_library_order() {
    let d = |p: &str| coder_verdict(p).expect_err(p);
    assert_eq!(
        d("ab"),
        "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password"
    );
    assert_eq!(
        d("AB"),
        "insecure password, try including more special characters, using lowercase letters, using numbers or using a longer password"
    );
    assert_eq!(
        d("12"),
        "insecure password, try including more special characters, using lowercase letters, using uppercase letters or using a longer password"
    );
    assert_eq!(
        d("aA1"),
        "insecure password, try including more special characters or using a longer password"
    );
    // Every pool present, including all three special ones: only length is left to advise.
    assert_eq!(
        d("aA1!_#"),
        "insecure password, try using a longer password"
    );
}

#[test]
fn the_stricter_policy_adds_its_rules_after_coders() {
    let all = PasswordPolicy {
        min_length: 16,
        blocklist: true,
        reject_user_info: true,
    };
    let alice = Some(UserInfo {
        username: "alice",
        email: "alice.smith@example.com",
    });
    // Coder's text first, whatever else is wrong.
    assert!(all
        .check("pass", alice)
        .expect_err("weak")
        .starts_with("insecure"));
    assert_eq!(
        all.check("Summer2024!", None),
        Err("password must be at least 16 characters".to_owned())
    );
    let common = PasswordPolicy {
        blocklist: true,
        ..PasswordPolicy::CODER
    };
    // `trustno1` passes Coder's rule in this case-mixed form, but is on the list.
    assert_eq!(coder_verdict("TrustNo1TrustNo1"), Ok(()));
    assert!(is_common("trustno1"));
    assert!(is_common("PASSWORD"));
    assert!(!is_common("Kx8#mQ2$vL9@"));
    assert_eq!(common.check("Kx8#mQ2$vL9@", None), Ok(()));
    assert_eq!(
        all.check("ALICE-has-a-Long-9", alice),
        Err("password must not contain the username".to_owned())
    );
    assert_eq!(
        all.check("my-Alice.Smith-99!", alice),
        Err("password must not contain the username".to_owned())
    );
    let bob = Some(UserInfo {
        username: "bob",
        email: "rob.b@example.com",
    });
    assert_eq!(
        all.check("Secret-ROB.B-1234!", bob),
        Err("password must not contain the email address".to_owned())
    );
    // Shorter than 3 characters: not looked for.
    let al = Some(UserInfo {
        username: "al",
        email: "al@example.com",
    });
    assert_eq!(all.check("Walnut-Alps-9182!", al), Ok(()));
    // Without a user, the rule has nothing to compare.
    assert_eq!(all.check("ALICE-has-a-Long-9", None), Ok(()));
    assert_eq!(PasswordPolicy::default(), PasswordPolicy::CODER);
}

#[test]
fn the_bundled_list_has_ten_thousand_entries() {
    let n = COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).count();
    assert_eq!(n, 10_000);
}
