//! The service API: enrollment groups and individual enrollments (CRUD, ETags, paging, bulk, queries).

use super::*;

/// `--json` carries the status page's ready link (as the start-up text
/// does): it serves the page, its token is not the SAS key, and the page
/// without the token is refused.
#[tokio::test]
async fn json_start_up_names_the_status_page() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let link = emu.info["statusPage"]
        .as_str()
        .unwrap_or_else(|| panic!("no statusPage in {}", emu.info))
        .to_string();
    assert!(link.starts_with("https://localhost:"), "{link}");
    assert!(
        !link.contains(&emu.key),
        "the link must not hold the SAS key"
    );
    let c = emu.client(None);
    let page = c.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().starts_with("<!doctype html>"));
    let bare = link.split('?').next().unwrap();
    assert_eq!(c.get(bare).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn enrollment_group_lifecycle_etags_and_paging() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let chain = TestChain::new("Lifecycle");
    let pem = chain.intermediate.cert.pem.clone();

    // Create: 200 (never 201), info computed, certificate never returned.
    let (s, h, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[],
        Some(x509_group("line-1", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    let created = j(&body);
    assert!(!body.contains("BEGIN CERTIFICATE"), "{body}");
    let info = &created["attestation"]["x509"]["signingCertificates"]["primary"]["info"];
    assert_eq!(info["subjectName"], "CN=Lifecycle Intermediate CA");
    assert_eq!(info["version"], 3);
    assert_eq!(info["sha256Thumbprint"].as_str().unwrap().len(), 64);
    let etag1 = created["etag"].as_str().unwrap().to_string();

    // Create again without If-Match: 409 409202.
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[],
        Some(x509_group("line-1", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(j(&body)["errorCode"], 409202);

    // PUT-back of the returned record (info only, no certificate) with If-Match: keeps the certificate.
    let mut back = created.clone();
    back["provisioningStatus"] = json!("disabled");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let updated = j(&body);
    let etag2 = updated["etag"].as_str().unwrap().to_string();
    assert_ne!(etag1, etag2);
    assert_eq!(updated["provisioningStatus"], "disabled");
    assert_eq!(updated["createdDateTimeUtc"], created["createdDateTimeUtc"]);
    assert_eq!(
        updated["attestation"]["x509"]["signingCertificates"]["primary"]["info"],
        *info
    );

    // Stale etag: 412. Quoted etag (C# v1 style) and `*`: accepted.
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let quoted = format!("\"{etag2}\"");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", &quoted)],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, _) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/line-1",
        &[("if-match", "*")],
        Some(back.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    // GET (case-insensitive collection, percent-encoded id) and 404 404204.
    let (s, _, body) = call(&emu, &c, Method::GET, "/enrollmentgroups/LINE-1", &[], None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["enrollmentGroupId"], "line-1");
    let (s, _, body) = call(
        &emu,
        &c,
        Method::GET,
        "/enrollmentGroups/missing",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(j(&body)["errorCode"], 404204);
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/a%3Ab",
        &[],
        Some(x509_group("a:b", &pem)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // attestationmechanism (lower-case g, as Node sends it).
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollmentgroups/line-1/attestationmechanism",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["type"], "x509");

    // Symmetric-key group: keys generated and returned.
    let sym = json!({"enrollmentGroupId":"sym","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":null,"secondaryKey":null}}});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/sym",
        &[],
        Some(sym.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        j(&body)["attestation"]["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .len(),
        88
    );

    // Paging: 3 more groups, 6 in all, page size 4 → 4 + 2, no continuation on the last page.
    for i in 0..3 {
        let id = format!("page-{i}");
        let (s, _, _) = call(
            &emu,
            &c,
            Method::PUT,
            &format!("/enrollmentGroups/{id}"),
            &[],
            Some(x509_group(&id, &pem)),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut hdrs = vec![("x-ms-max-item-count", "4".to_string())];
        if let Some(t) = &token {
            hdrs.push(("x-ms-continuation", t.clone()));
        }
        let hdrs: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, h, body) = call(
            &emu,
            &c,
            Method::POST,
            "/enrollmentGroups/query",
            &hdrs,
            Some(r#"{"query":"*"}"#.into()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(h["x-ms-item-type"], "EnrollmentGroup");
        let items = j(&body);
        for g in items.as_array().unwrap() {
            seen.push(g["enrollmentGroupId"].as_str().unwrap().to_string());
        }
        assert!(!body.contains("BEGIN CERTIFICATE"));
        pages += 1;
        match h.get("x-ms-continuation") {
            Some(t) => {
                assert!(!t.is_empty());
                token = Some(t.to_str().unwrap().to_string());
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 6, "{seen:?}");

    // DELETE: stale etag 412, then 204 with no body and no Content-Type, then 404.
    let (s, _, _) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[("if-match", &etag1)],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, h, body) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    assert!(h.get("content-type").is_none());
    let (s, _, _) = call(
        &emu,
        &c,
        Method::DELETE,
        "/enrollmentGroups/line-1",
        &[],
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_if_match_updates_lose_nothing() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let sym = json!({"enrollmentGroupId":"race","attestation":{"type":"symmetricKey"}});
    let (_, _, body) = call(
        &emu,
        &c,
        Method::PUT,
        "/enrollmentGroups/race",
        &[],
        Some(sym.to_string()),
    )
    .await;
    let rec = j(&body);
    let etag = rec["etag"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (emu_url, sas, c, etag) = (
            emu.url(&format!("/enrollmentGroups/race?{SERVICE_API}")),
            emu.sas(),
            c.clone(),
            etag.clone(),
        );
        let mut r = rec.clone();
        r["initialTwin"] = json!({"tags": {"writer": i}});
        tasks.push(tokio::spawn(async move {
            c.put(emu_url)
                .header("authorization", sas)
                .header("if-match", etag)
                .header("content-type", "application/json")
                .body(r.to_string())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one writer may win an If-Match race");
}

#[tokio::test]
async fn bulk_operations_and_individual_enrollment_queries() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let sk = |id: &str| json!({"registrationId": id, "attestation": {"type": "symmetricKey"}});
    let bulk = json!({"mode": "create", "enrollments": [sk("bulk-1"), sk("bulk-2")]});
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(bulk.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(j(&body)["isSuccessful"], true, "{body}");
    // Creating again reports a per-item 409201, still HTTP 200.
    let (s, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(bulk.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = j(&body);
    assert_eq!(v["isSuccessful"], false);
    assert_eq!(v["errors"][0]["errorCode"], 409201, "{body}");
    assert_eq!(v["errors"][0]["registrationId"], "bulk-1");
    // More than 10 items is refused.
    let many: Vec<Value> = (0..11).map(|i| sk(&format!("m-{i}"))).collect();
    let (s, _, _) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(json!({"mode":"create","enrollments": many}).to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Query of individual enrollments: item type Enrollment, keys returned.
    let (s, h, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments/query",
        &[],
        Some(r#"{"query":"SELECT *"}"#.into()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-ms-item-type"], "Enrollment");
    let items = j(&body);
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert!(items[0]["attestation"]["symmetricKey"]["primaryKey"].is_string());
    assert!(h.get("x-ms-continuation").is_none());
    // Bulk delete.
    let del = json!({"mode": "delete", "enrollments": [sk("bulk-1"), sk("bulk-2")]});
    let (_, _, body) = call(
        &emu,
        &c,
        Method::POST,
        "/enrollments",
        &[],
        Some(del.to_string()),
    )
    .await;
    assert_eq!(j(&body)["isSuccessful"], true, "{body}");
    let (_, _, body) = call(&emu, &c, Method::POST, "/enrollments/query", &[], None).await;
    assert_eq!(body, "[]");
}

/// C# v1 quotes every `If-Match` (sdk-wire A.1), so its forced update sends `"*"`: it forces like `*`.
#[tokio::test]
async fn quoted_star_if_match_forces_an_update() {
    let dir = tmp();
    let emu = Emulator::start(dir.path(), &["--in-memory"]);
    let c = emu.client(None);
    let pem = TestChain::new("QuotedStar").intermediate.cert.pem;
    let put = |if_match: Option<&'static str>| {
        let (emu, c, pem) = (&emu, &c, &pem);
        async move {
            let h: Vec<(&str, &str)> = if_match.map(|m| ("if-match", m)).into_iter().collect();
            call(
                emu,
                c,
                Method::PUT,
                "/enrollmentGroups/quoted-star",
                &h,
                Some(x509_group("quoted-star", pem)),
            )
            .await
        }
    };
    let (s, _, body) = put(None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let etag1 = j(&body)["etag"].as_str().unwrap().to_string();
    let (s, _, body) = put(Some("\"*\"")).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "If-Match: \"*\" must force the update: {body}"
    );
    assert_ne!(j(&body)["etag"].as_str().unwrap(), etag1);
    // A quoted etag that is not current still fails, and so does a bare one.
    let (s, _, body) = put(Some("\"bm90LWN1cnJlbnQ=\"")).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(j(&body)["errorCode"], 412001);
}

/// A raw request with an explicit api-version and client name (`UserAgent`
/// is the header name C# v1 uses).
async fn versioned(
    emu: &Emulator,
    c: &Client,
    path: &str,
    version: &str,
    ua: (&str, &str),
) -> (StatusCode, String) {
    let r = c
        .get(emu.url(&format!("{path}?api-version={version}")))
        .header("authorization", emu.sas())
        .header(ua.0, ua.1)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The service API's 2019-03-31 (C# v1, Java 2.x) is retired: accepted with
/// one warning per client; `--strict-api-versions` answers the cloud's 400.
#[tokio::test]
async fn retired_service_api_version_warns_once_per_client_and_strict_refuses_it() {
    let dir = tmp();
    let log = dir.path().join("emu.log");
    let emu = Emulator::start_logging(&dir.path().join("data"), &["--in-memory"], &log);
    let c = emu.client(None);
    for _ in 0..3 {
        let (s, body) = versioned(
            &emu,
            &c,
            "/enrollmentGroups/none",
            "2019-03-31",
            ("user-agent", "client-a/1"),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "accepted, then the group is missing: {body}"
        );
    }
    let (s, _) = versioned(
        &emu,
        &c,
        "/enrollmentGroups/none",
        "2019-03-31",
        ("useragent", "client-b/1"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = versioned(
        &emu,
        &c,
        "/enrollmentGroups/none",
        "2021-10-01",
        ("user-agent", "client-c/1"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 2, "one per client:\n{text}");
    for (w, client) in warnings.iter().zip(["client-a/1", "client-b/1"]) {
        assert!(
            w.contains(client)
                && w.contains("service api-version 2019-03-31")
                && w.contains("retired in December 2024")
                && w.contains("the current version is 2021-10-01"),
            "{w}"
        );
    }
    drop(emu);

    let strict = Emulator::start(
        &dir.path().join("strict"),
        &["--in-memory", "--strict-api-versions"],
    );
    let c = strict.client(None);
    let (s, body) = versioned(
        &strict,
        &c,
        "/enrollmentGroups/g1",
        "2019-03-31",
        ("user-agent", "x"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let v = j(&body);
    assert!(
        v["Message"]
            .as_str()
            .unwrap()
            .starts_with("ErrorCode:ArgumentInvalid;Unknown api version; uri: /enrollmentGroups/g1?api-version=2019-03-31"),
        "{body}"
    );
    assert!(
        v["ExceptionMessage"]
            .as_str()
            .unwrap()
            .starts_with("Tracking ID:"),
        "{body}"
    );
    let (s, _) = versioned(
        &strict,
        &c,
        "/enrollmentGroups/g1",
        "2021-10-01",
        ("user-agent", "x"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a current version passes");
    // The device API's 2019-03-31 (every device SDK sends it) is not retired: strict lets it through
    // to authentication.
    let r = c
        .put(strict.url(&format!(
            "/{}/registrations/dev-1/register?api-version=2019-03-31",
            strict.id_scope()
        )))
        .header("content-type", "application/json")
        .body(r#"{"registrationId":"dev-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{}",
        r.text().await.unwrap()
    );
}
