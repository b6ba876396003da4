use super::*;

/// Coder's test vector (spec §9): the password `tomato`.
const CODER_TOMATO: &str = "$pbkdf2-sha256$65535$z8c1p1C2ru9EImBP1I+ZNA$pNjE3Yk0oG0PmJ0Je+y7ENOVlSkn/b0BEqqdKsq6Y97wQBq0xT+lD5bWJpyIKJqQICuPZcEaGDKrXJn8+SIHRg";

/// Small costs so that tests run fast.
fn small() -> PasswordParams {
    PasswordParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
        max_concurrent: 2,
        queue: 8,
    }
}

fn passwords(params: PasswordParams) -> Passwords {
    Passwords::new(params).unwrap()
}

#[test]
fn defaults_are_owasps_argon2id_choice() {
    let d = PasswordParams::default();
    assert_eq!((d.memory_kib, d.iterations, d.parallelism), (19456, 2, 1));
    assert!(d.max_concurrent >= 1);
    assert_eq!(d.queue, 64);
    assert!(Passwords::new(d).is_ok());
}

#[test]
fn unusable_parameters_are_refused() {
    let zero_slots = PasswordParams {
        max_concurrent: 0,
        ..small()
    };
    let tiny_memory = PasswordParams {
        memory_kib: 4,
        ..small()
    };
    for p in [zero_slots, tiny_memory] {
        assert!(
            matches!(Passwords::new(p), Err(PasswordError::Params(_))),
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn a_hash_verifies_its_password_only() {
    let pw = passwords(small());
    let hash = pw.hash("correct horse").await.unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
    let good = pw.verify("correct horse", &hash).await.unwrap();
    assert_eq!(
        good,
        Verified {
            ok: true,
            needs_rehash: false
        }
    );
    for wrong in ["correct horsE", "", "correct horse "] {
        assert!(!pw.verify(wrong, &hash).await.unwrap().ok, "{wrong:?}");
    }
    // Fresh salts: the same password never hashes the same way twice.
    assert_ne!(pw.hash("correct horse").await.unwrap(), hash);
}

#[tokio::test]
async fn coders_pbkdf2_vector_verifies_and_asks_for_a_rehash() {
    let pw = passwords(small());
    let v = pw.verify("tomato", CODER_TOMATO).await.unwrap();
    assert_eq!(
        v,
        Verified {
            ok: true,
            needs_rehash: true
        }
    );
    assert!(!pw.verify("potato", CODER_TOMATO).await.unwrap().ok);
    assert!(!pw.verify("", CODER_TOMATO).await.unwrap().ok);
}

#[tokio::test]
async fn an_argon2_hash_with_other_parameters_asks_for_a_rehash() {
    let old = passwords(PasswordParams {
        memory_kib: 128,
        ..small()
    });
    let hash = old.hash("pw").await.unwrap();
    let current = passwords(small());
    let v = current.verify("pw", &hash).await.unwrap();
    assert_eq!(
        v,
        Verified {
            ok: true,
            needs_rehash: true
        }
    );
    let t2 = passwords(PasswordParams {
        iterations: 2,
        ..small()
    });
    assert!(t2.verify("pw", &hash).await.unwrap().needs_rehash);
    assert!(!old.verify("pw", &hash).await.unwrap().needs_rehash);
}

#[tokio::test]
async fn the_dummy_verify_never_succeeds() {
    let pw = passwords(small());
    for input in ["", "hunter2", "portcullis dummy password", "tomato", "x"] {
        let v = pw.verify_dummy(input).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: false,
                needs_rehash: false
            },
            "{input:?}"
        );
    }
    // It recomputes argon2id with the configured costs: its hash parses, and no
    // parameter difference makes it cheaper than a real account's verify.
    let dummy = &pw.inner.dummy;
    assert!(dummy.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{dummy}");
    let v = pw.inner.verify(b"hunter2", dummy).unwrap();
    assert_eq!(
        v,
        Verified {
            ok: false,
            needs_rehash: false
        }
    );
    let default = passwords(PasswordParams::default());
    assert!(default
        .inner
        .dummy
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
}

#[tokio::test]
async fn overlong_passwords_are_refused_before_hashing() {
    let pw = passwords(small());
    let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
    let hash = pw.hash("a").await.unwrap();
    assert!(matches!(pw.hash(&long).await, Err(PasswordError::TooLong)));
    assert!(matches!(
        pw.verify(&long, &hash).await,
        Err(PasswordError::TooLong)
    ));
    assert!(matches!(
        pw.verify_dummy(&long).await,
        Err(PasswordError::TooLong)
    ));
    // Multi-byte characters count in bytes.
    let wide = "é".repeat(MAX_PASSWORD_BYTES / 2 + 1);
    assert!(matches!(pw.hash(&wide).await, Err(PasswordError::TooLong)));
    let at_cap = "a".repeat(MAX_PASSWORD_BYTES);
    let h = pw.hash(&at_cap).await.unwrap();
    assert!(pw.verify(&at_cap, &h).await.unwrap().ok);
}

#[tokio::test]
async fn a_malformed_stored_hash_is_an_error_not_a_false() {
    let pw = passwords(small());
    let good = pw.hash("pw").await.unwrap();
    let (head, tail) = CODER_TOMATO.split_at(CODER_TOMATO.len() - 4);
    let cases = [
        String::new(),
        "plaintext".into(),
        "$2b$10$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01".into(),
        good.replace("argon2id", "argon2i"),
        good.rsplit_once('$').unwrap().0.to_owned(),
        good.replace("m=64", "m=x"),
        "$pbkdf2-sha256$1$c2FsdA$short".into(),
        CODER_TOMATO.replace("65535", "0"),
        CODER_TOMATO.replace("65535", "abc"),
        CODER_TOMATO.replace("$z8c1", "$!8c1"),
        format!("{CODER_TOMATO}$extra"),
        head.to_owned(),
        format!("{head}{tail}{tail}"),
        CODER_TOMATO.replacen("pbkdf2-sha256", "pbkdf2-sha512", 1),
    ];
    for stored in &cases {
        let got = pw.verify("pw", stored).await;
        assert!(
            matches!(got, Err(PasswordError::Malformed(_))),
            "{stored:?}: {got:?}"
        );
        // The error never echoes the stored hash.
        if let Err(e) = got {
            assert!(stored.is_empty() || !e.to_string().contains(stored.as_str()));
        }
    }
}

/// Takes `pw`'s only hashing slot (as a long hash would) and starts one hash that waits for
/// it; returns once that hash is queued.
async fn hold_the_slot_with_a_waiter(
    pw: &Passwords,
) -> (
    tokio::sync::OwnedSemaphorePermit,
    tokio::task::JoinHandle<Result<String, PasswordError>>,
) {
    let held = Arc::clone(&pw.inner.slots).try_acquire_owned().unwrap();
    let waiter = tokio::spawn({
        let pw = pw.clone();
        async move { pw.hash("waiting").await }
    });
    while pw.inner.waiting.load(Ordering::Acquire) == 0 {
        tokio::task::yield_now().await;
    }
    (held, waiter)
}

#[tokio::test]
async fn callers_past_the_queue_bound_get_busy_at_once() {
    let pw = passwords(PasswordParams {
        max_concurrent: 1,
        queue: 1,
        ..small()
    });
    // Hold the only slot, as a long hash would.
    let (held, waiter) = hold_the_slot_with_a_waiter(&pw).await;
    for _ in 0..3 {
        assert!(matches!(pw.hash("extra").await, Err(PasswordError::Busy)));
        assert!(matches!(
            pw.verify_dummy("extra").await,
            Err(PasswordError::Busy)
        ));
    }
    drop(held);
    assert!(waiter.await.unwrap().is_ok());
    assert_eq!(pw.inner.waiting.load(Ordering::Acquire), 0);
    // Once the queue has drained, calls succeed again.
    assert!(pw.hash("later").await.is_ok());
}

#[tokio::test]
async fn a_burst_of_concurrent_hashes_sheds_the_extras() {
    let pw = passwords(PasswordParams {
        memory_kib: 1024,
        max_concurrent: 1,
        queue: 1,
        ..small()
    });
    let results = futures_util::future::join_all((0..6).map(|_| pw.hash("burst"))).await;
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(PasswordError::Busy)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    // One runs, one waits, and the others are refused while those two are in flight.
    assert_eq!(ok + busy, 6, "{results:?}");
    assert!(ok >= 2 && busy >= 1, "ok {ok}, busy {busy}");
}

#[tokio::test]
async fn a_cancelled_waiter_gives_its_place_back() {
    let pw = passwords(PasswordParams {
        max_concurrent: 1,
        queue: 1,
        ..small()
    });
    let (held, waiter) = hold_the_slot_with_a_waiter(&pw).await;
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(pw.inner.waiting.load(Ordering::Acquire), 0);
    drop(held);
    assert!(pw.hash("after").await.is_ok());
}

/// argon2's working memory is allocated once per concurrent slot and reused, so the memory
/// logins cost is bounded by `max_concurrent` buffers however many run.
#[tokio::test]
async fn working_memory_is_reused_and_bounded_by_the_slots() {
    let p = passwords(PasswordParams {
        max_concurrent: 2,
        queue: 64,
        ..small()
    });
    let hashes = futures_util::future::join_all((0..8).map(|i| {
        let p = p.clone();
        async move { p.hash(&format!("password {i}")).await }
    }))
    .await;
    for (i, h) in hashes.into_iter().enumerate() {
        let h = h.expect("hashed");
        let v = p
            .verify(&format!("password {i}"), &h)
            .await
            .expect("verified");
        assert!(v.ok && !v.needs_rehash);
    }
    let buffers = p.inner.lock_buffers();
    assert!(
        !buffers.is_empty() && buffers.len() <= 2,
        "{} buffers",
        buffers.len()
    );
    assert!(buffers.iter().all(|b| b.len() == p.inner.block_count));
}
