//! Logical dumps against a real PostgreSQL 15: `backup pg-dump` (one database, `--all`),
//! `backup stdin --kind pg-dump`, `restore pg-dump`, `cat | pg_restore`, night-over-night
//! dedup, and every way a dump can fail leaving no snapshot behind.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::pg::{self, Cluster, PgWorld};
use common::{assert_fails_with, assert_success};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Plain SQL, comparable byte for byte: psql's `\restrict` key is otherwise random
/// (PostgreSQL 15.14 and later).
const PLAIN: [&str; 2] = ["-Fp", "--restrict-key=stowagetest"];

/// A world with one running cluster.
fn started() -> (PgWorld, Cluster) {
    let world = PgWorld::new();
    let mut cluster = Cluster::init(&world, "db", None, &[]);
    cluster.start();
    (world, cluster)
}

fn snapshots(world: &PgWorld) -> Vec<serde_json::Value> {
    json(&world.ok(&["--json", "snapshots"]))
        .as_array()
        .unwrap()
        .clone()
}

fn run(world: &PgWorld, args: &[&str]) -> Output {
    world.stowage(args).output().unwrap()
}

/// `backup pg-dump ARGS --json`, asserting success.
fn backup(world: &PgWorld, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "backup", "pg-dump", "--pg-bin", pg::PG_BIN];
    all.extend_from_slice(args);
    json(&world.ok(&all))
}

/// Tables in `public`, by name.
fn tables(cluster: &Cluster, db: &str) -> String {
    cluster.sql_in(
        db,
        "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') \
         FROM pg_tables WHERE schemaname = 'public'",
    )
}

/// A digest of a table's rows in key order.
fn rows(cluster: &Cluster, db: &str, table: &str, key: &str) -> String {
    cluster.sql_in(
        db,
        &format!(
            "SELECT count(*) || ':' || md5(string_agg(t::text, '|' ORDER BY {key})) FROM {table} t"
        ),
    )
}

/// pgbench's tables at scale 1 and a table of our own with awkward types.
fn fill_shop(cluster: &Cluster) {
    cluster.sql("CREATE DATABASE shop");
    cluster.pgbench("shop", &["-i", "-s", "1", "-q"]);
    cluster.sql_in(
        "shop",
        "CREATE TABLE notes (id serial PRIMARY KEY, body text, raw bytea, doc jsonb, price numeric(12,2));
         INSERT INTO notes (body, raw, doc, price)
           SELECT 'note ' || g || ' – ünïcödé ✓', decode(md5(g::text), 'hex'),
                  jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g % 7)),
                  CASE WHEN g % 10 = 0 THEN NULL ELSE g * 1.25 END
           FROM generate_series(1, 5000) g;
         CREATE INDEX notes_body ON notes (body);
         CREATE VIEW cheap_notes AS SELECT id, body FROM notes WHERE price < 100;",
    );
}

#[test]
fn a_dump_restores_to_an_identical_database_whole_or_one_table() {
    if pg::skip() {
        return;
    }
    let (world, cluster) = started();
    fill_shop(&cluster);
    // pg_dump from PATH (no --pg-bin), the snapshot named after the database.
    let out = json(&world.ok(&[
        "--json",
        "backup",
        "pg-dump",
        "--dbname",
        &cluster.connstr("shop"),
        "--tag",
        "nightly",
    ]));
    assert_eq!(out["kind"], "pg-dump");
    assert_eq!(out["name"], "shop");
    assert_eq!(out["files"], 1);
    let listed = snapshots(&world);
    assert_eq!(listed.len(), 1);
    let source = &listed[0]["source"];
    assert_eq!(source["format"], "custom", "{source:#}");
    assert_eq!(source["database"], "shop");
    assert_eq!(source["compression"], "none");
    assert!(source["server_version"]
        .as_str()
        .unwrap()
        .starts_with("15."));
    assert!(source["pg_dump_version"]
        .as_str()
        .unwrap()
        .starts_with("15."));
    assert_eq!(source["dumps"][0]["file"], "shop.dump");

    // Whole database, one step, into a new database.
    cluster.sql("CREATE DATABASE shop_copy");
    world.ok(&[
        "restore",
        "pg-dump",
        "latest",
        "--dbname",
        &cluster.connstr("shop_copy"),
    ]);
    let original = cluster.pg_dump("shop", &PLAIN);
    let restored = cluster.pg_dump("shop_copy", &PLAIN);
    assert!(original.len() > 5_000_000, "pgbench -s 1 dumps ~10 MB");
    assert!(
        original == restored,
        "plain dumps of original and restore differ"
    );

    // `stowage cat | pg_restore` reads the same archive.
    let cat = world
        .stowage(&["cat", "latest", "shop.dump"])
        .output()
        .unwrap();
    assert_success(&cat, &["cat"]);
    let mut pg_restore = pg::as_owner(Path::new(pg::PG_BIN).join("pg_restore"));
    pg_restore.args(["-f", "-", PLAIN[1]]);
    let sql = common::run_with_input(pg_restore, &cat.stdout);
    assert!(
        sql.status.success(),
        "{}",
        String::from_utf8_lossy(&sql.stderr)
    );
    assert!(
        sql.stdout == original,
        "pg_restore -f - of the stored dump differs"
    );

    // One table into an empty database: that table, those rows, nothing else.
    cluster.sql("CREATE DATABASE one_table");
    world.ok(&[
        "restore",
        "pg-dump",
        "latest",
        "--dbname",
        &cluster.connstr("one_table"),
        "--table",
        "notes",
        "--pg-bin",
        pg::PG_BIN,
    ]);
    assert_eq!(tables(&cluster, "one_table"), "notes");
    assert_eq!(
        rows(&cluster, "one_table", "notes", "id"),
        rows(&cluster, "shop", "notes", "id")
    );

    // A database that does not exist: pg_restore's own words, non-zero.
    let out = run(
        &world,
        &[
            "restore",
            "pg-dump",
            "latest",
            "--dbname",
            &cluster.connstr("nowhere"),
        ],
    );
    assert_fails_with(
        &out,
        &[
            "pg_restore into database nowhere failed",
            "database \"nowhere\" does not exist",
        ],
    );
    // A snapshot of another kind is refused, and says how to stream it instead.
    let out = common::run_with_input(world.stowage(&["backup", "stdin", "--name", "x"]), b"x");
    assert_success(&out, &["backup", "stdin"]);
    let id = snapshots(&world)[1]["id"].as_str().unwrap().to_string();
    let out = run(
        &world,
        &[
            "restore",
            "pg-dump",
            &id,
            "--dbname",
            &cluster.connstr("one_table"),
        ],
    );
    assert_fails_with(&out, &["is of kind stdin, not pg-dump", "stowage cat"]);
    // The plain form of restore is untouched.
    let target = world.root().join("files");
    world.ok(&[
        "restore",
        "latest",
        "--kind",
        "pg-dump",
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(target.join("shop.dump")).unwrap(),
        cat.stdout,
        "restore --to writes the dump file"
    );

    // Extra pg_dump arguments pass through, hyphens and all.
    let out = backup(
        &world,
        &[
            "--dbname",
            &cluster.connstr("shop"),
            "--pg-dump-arg",
            "--exclude-table-data=notes",
            "--pg-dump-arg=--no-owner",
            "--name",
            "shop-lite",
        ],
    );
    assert_eq!(out["name"], "shop-lite");
    cluster.sql("CREATE DATABASE shop_lite");
    let restored = json(&world.ok(&[
        "--json",
        "restore",
        "pg-dump",
        "latest",
        "--name",
        "shop-lite",
        "--dbname",
        &cluster.connstr("shop_lite"),
    ]));
    assert_eq!(restored["file"], "shop.dump");
    assert_eq!(
        cluster.sql_in("shop_lite", "SELECT count(*) FROM notes"),
        "0"
    );
    assert_eq!(
        rows(&cluster, "shop_lite", "pgbench_branches", "bid"),
        rows(&cluster, "shop", "pgbench_branches", "bid")
    );
}

#[test]
fn all_databases_and_the_globals_in_one_snapshot() {
    if pg::skip() {
        return;
    }
    let (world, cluster) = started();
    cluster.sql("CREATE ROLE auditor LOGIN PASSWORD 'x' VALID UNTIL '2031-01-01'");
    for db in ["alpha", "beta"] {
        cluster.sql(&format!("CREATE DATABASE {db}"));
        cluster.sql_in(
            db,
            &format!(
                "CREATE TABLE items AS SELECT g AS id, '{db}-' || g AS label FROM generate_series(1, 2000) g;
                 GRANT SELECT ON items TO auditor;"
            ),
        );
    }
    let server = format!(
        "host={} port={} user=postgres",
        cluster.socket_dir.display(),
        cluster.port
    );
    let out = backup(&world, &["--all", "--dbname", &server]);
    assert_eq!(out["name"], "all");
    assert_eq!(out["files"], 4, "{out:#}");
    let listed = snapshots(&world);
    let source = &listed[0]["source"];
    assert_eq!(source["all"], true);
    let files: Vec<&str> = source["dumps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        ["globals.sql", "alpha.dump", "beta.dump", "postgres.dump"]
    );
    let globals = world
        .stowage(&["cat", "latest", "globals.sql"])
        .output()
        .unwrap();
    assert_success(&globals, &["cat", "globals.sql"]);
    let globals = String::from_utf8(globals.stdout).unwrap();
    assert!(globals.contains("CREATE ROLE auditor;"), "{globals}");

    // Without --db, restore says which dumps there are.
    cluster.sql("CREATE DATABASE beta_copy");
    let out = run(
        &world,
        &[
            "restore",
            "pg-dump",
            "latest",
            "--dbname",
            &cluster.connstr("beta_copy"),
        ],
    );
    assert_fails_with(&out, &["--db NAME", "alpha, beta, postgres"]);
    world.ok(&[
        "restore",
        "pg-dump",
        "latest",
        "--db",
        "beta",
        "--dbname",
        &cluster.connstr("beta_copy"),
    ]);
    assert_eq!(
        rows(&cluster, "beta_copy", "items", "id"),
        rows(&cluster, "beta", "items", "id")
    );
    let out = run(
        &world,
        &[
            "restore",
            "pg-dump",
            "latest",
            "--db",
            "gamma",
            "--dbname",
            &cluster.connstr("beta_copy"),
        ],
    );
    assert_fails_with(&out, &["no file", "gamma.dump"]);

    // The globals bring a dropped role back.
    for db in ["alpha", "beta", "beta_copy"] {
        cluster.sql_in(db, "DROP OWNED BY auditor");
    }
    cluster.sql("DROP ROLE auditor");
    world.ok(&[
        "restore",
        "pg-dump",
        "latest",
        "--globals",
        "--dbname",
        &cluster.connstr("postgres"),
    ]);
    assert_eq!(
        cluster.sql("SELECT rolname FROM pg_roles WHERE rolname = 'auditor'"),
        "auditor"
    );
}

#[test]
fn a_dump_from_stdin_is_checked_and_restorable() {
    if pg::skip() {
        return;
    }
    let (world, cluster) = started();
    cluster.sql("CREATE DATABASE inventory");
    cluster.sql_in(
        "inventory",
        "CREATE TABLE parts AS SELECT g AS id, md5(g::text) AS code FROM generate_series(1, 20000) g",
    );
    let dump = cluster.pg_dump("inventory", &["-Fc", "-Z0"]);
    let out = common::run_with_input(
        world.stowage(&[
            "--json",
            "backup",
            "stdin",
            "--kind",
            "pg-dump",
            "--name",
            "inventory",
        ]),
        &dump,
    );
    assert_success(&out, &["backup", "stdin", "--kind", "pg-dump"]);
    let out = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out["kind"], "pg-dump");
    let listed = snapshots(&world);
    assert_eq!(listed[0]["source"]["database"], "inventory");
    assert_eq!(listed[0]["source"]["dumps"][0]["file"], "inventory.dump");
    cluster.sql("CREATE DATABASE inventory_copy");
    world.ok(&[
        "restore",
        "pg-dump",
        "latest",
        "--dbname",
        &cluster.connstr("inventory_copy"),
    ]);
    assert_eq!(
        rows(&cluster, "inventory_copy", "parts", "id"),
        rows(&cluster, "inventory", "parts", "id")
    );

    // A plain-text dump is not a custom-format archive: refused, nothing saved.
    let plain = cluster.pg_dump("inventory", &["-Fp"]);
    for (input, says) in [
        (&plain[..], "not a pg_dump custom-format archive"),
        (&b""[..], "empty"),
        (&dump[..20], "ends inside its pg_dump archive header"),
    ] {
        let out = common::run_with_input(
            world.stowage(&[
                "backup",
                "stdin",
                "--kind",
                "pg-dump",
                "--name",
                "inventory",
            ]),
            input,
        );
        assert_fails_with(&out, &["reading standard input", says]);
    }
    assert_eq!(snapshots(&world).len(), 1);
}

/// A day of traffic as in the benchmark (pgbench -s 100: 1% new accounts, 1,000
/// of 10 million updated), at the same density for a smaller database: 1% new, and one
/// account in 10,000 updated, scattered.
fn a_day_of_changes(cluster: &Cluster, db: &str, accounts: u64) {
    let new = accounts / 100;
    let updated = accounts / 10_000;
    cluster.sql_in(
        db,
        &format!(
            "INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
               SELECT {accounts} + g, 1, 0, '' FROM generate_series(1, {new}) g;
             UPDATE pgbench_accounts SET abalance = abalance + 1
               WHERE aid IN (SELECT (g * 7919) % {accounts} + 1 FROM generate_series(1, {updated}) g);"
        ),
    );
}

#[test]
fn the_second_night_stores_little() {
    if pg::skip() {
        return;
    }
    let (world, cluster) = started();
    cluster.sql("CREATE DATABASE bank");
    cluster.pgbench("bank", &["-i", "-s", "10", "-q"]);
    let connstr = cluster.connstr("bank");
    let first = backup(&world, &["--dbname", &connstr]);
    a_day_of_changes(&cluster, "bank", 1_000_000);
    let second = backup(&world, &["--dbname", &connstr]);
    let stored = |v: &serde_json::Value| v["bytes_stored"].as_u64().unwrap() as f64;
    let ratio = stored(&second) / stored(&first);
    eprintln!(
        "first night {} bytes read, {} stored; second {} read, {} new, {} stored: {:.1}%",
        first["bytes_read"],
        first["bytes_stored"],
        second["bytes_read"],
        second["bytes_new"],
        second["bytes_stored"],
        ratio * 100.0
    );
    // Measured (random seeds): 6.6–8.1% of the bytes new, 11.9–13.0% stored (pgbench
    // rows compress ~80×, so the tree's chunk list is half of it). The repository's
    // default 1 MiB chunks store ~75% again.
    let new = second["bytes_new"].as_u64().unwrap() as f64;
    let read = second["bytes_read"].as_u64().unwrap() as f64;
    assert!(
        new / read < 0.12,
        "second night: {:.1}% of the bytes new",
        100.0 * new / read
    );
    assert!(
        ratio < 0.20,
        "second night stored {:.1}% of the first",
        ratio * 100.0
    );
}

/// A directory holding a fake `pg_dump` (a shell script) for `--pg-bin`.
fn fake_pg_dump(world: &PgWorld, name: &str, script: &str) -> PathBuf {
    let dir = world.root().join(name);
    world.mkdir(&dir);
    let path = dir.join("pg_dump");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn a_failing_or_killed_pg_dump_leaves_no_snapshot() {
    if pg::skip() {
        return;
    }
    let (world, cluster) = started();
    cluster.sql("CREATE DATABASE ledger");
    cluster.sql_in(
        "ledger",
        "CREATE TABLE entries AS SELECT g AS id, repeat(md5(g::text), 8) AS memo FROM generate_series(1, 50000) g",
    );
    let pg_bin = ["--pg-bin", pg::PG_BIN];
    let bad_db = cluster.connstr("nope");
    let out = run(
        &world,
        &[&["backup", "pg-dump", "--dbname", &bad_db][..], &pg_bin].concat(),
    );
    assert_fails_with(
        &out,
        &[
            "reading pg_dump of database nope: pg_dump failed (exit status: 1)",
            "database \"nope\" does not exist",
        ],
    );
    let ghost = format!("{} user=ghost", cluster.connstr("ledger"));
    let out = run(
        &world,
        &[&["backup", "pg-dump", "--dbname", &ghost][..], &pg_bin].concat(),
    );
    assert_fails_with(
        &out,
        &[
            "pg_dump of database ledger: pg_dump failed",
            "role \"ghost\" does not exist",
        ],
    );
    let out = run(
        &world,
        &[
            "backup",
            "pg-dump",
            "--all",
            "--dbname",
            &format!("{} user=ghost", cluster.connstr("postgres")),
        ],
    );
    assert_fails_with(
        &out,
        &[
            "listing the databases of",
            "as ghost",
            "role \"ghost\" does not exist",
        ],
    );

    // A real dump cut short: by a crash of pg_dump, or by pg_dump giving up.
    let dump = world.root().join("ledger.dump");
    let mut cmd = cluster.client("pg_dump");
    cmd.args(["-Fc", "-Z0", "-f"]).arg(&dump).arg("ledger");
    assert!(cmd.status().unwrap().success());
    assert!(std::fs::metadata(&dump).unwrap().len() > 2_000_000);
    let head = format!("head -c 1500000 {}", dump.display());
    let killed = fake_pg_dump(&world, "killed", &format!("{head}\nkill -9 $$"));
    let out = run(
        &world,
        &[
            "backup",
            "pg-dump",
            "--dbname",
            "ledger",
            "--pg-bin",
            killed.to_str().unwrap(),
        ],
    );
    assert_fails_with(&out, &["reading pg_dump of database ledger", "signal: 9"]);
    let gave_up = fake_pg_dump(
        &world,
        "gave-up",
        &format!("{head}\necho 'pg_dump: error: Dumping the contents of table \"entries\" failed' >&2\nexit 1"),
    );
    let out = run(
        &world,
        &[
            "backup",
            "pg-dump",
            "--dbname",
            "ledger",
            "--pg-bin",
            gave_up.to_str().unwrap(),
        ],
    );
    assert_fails_with(
        &out,
        &[
            "pg_dump failed (exit status: 1)",
            "Dumping the contents of table \"entries\" failed",
        ],
    );
    let out = run(
        &world,
        &[
            "backup",
            "pg-dump",
            "--dbname",
            "ledger",
            "--pg-bin",
            world.root().to_str().unwrap(),
        ],
    );
    assert_fails_with(&out, &["no pg_dump there"]);
    assert!(
        snapshots(&world).is_empty(),
        "a failed dump left a snapshot"
    );
    // What the failed runs stored is harmless: the repository verifies clean.
    world.ok(&["verify"]);
}
