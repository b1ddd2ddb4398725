-- Up Migration

-- A name belongs to the first account that claimed it (issue 13: the newest
-- claimant used to take it over). `username` is the name the directory shows
-- and resolves; `claimed_username` is what the account's latest token carries.
-- They differ while another account holds the claimed name: the account is
-- then shown under a derived name (see users.repository.ts derivedUsername,
-- which this file's derivation must match).
ALTER TABLE users ADD COLUMN claimed_username text, ADD COLUMN claimed_at timestamptz;
UPDATE users SET claimed_username = username, claimed_at = created_at;
ALTER TABLE users
  ALTER COLUMN claimed_username SET NOT NULL,
  ALTER COLUMN claimed_at SET NOT NULL,
  ALTER COLUMN claimed_at SET DEFAULT clock_timestamp(),
  DROP COLUMN username_key;

-- Databases written under the old rule hold duplicates: the earliest account
-- keeps the name, every later one is renamed by the same derivation, stepping
-- the attempt number past any name already taken.
CREATE INDEX users_username_lower_tmp ON users (lower(username));
DO $$
DECLARE
  r record;
  k integer;
  candidate text;
BEGIN
  FOR r IN
    SELECT id, username FROM (
      SELECT id, username, created_at,
             row_number() OVER (PARTITION BY lower(username) ORDER BY created_at, id) AS n
      FROM users
    ) ranked
    WHERE n > 1
    ORDER BY created_at, id
  LOOP
    k := 0;
    LOOP
      candidate := left(r.username, 23) || '-' || left(encode(sha256(convert_to(
        CASE WHEN k = 0 THEN r.id ELSE r.id || E'\n' || k END, 'UTF8')), 'hex'), 8);
      EXIT WHEN NOT EXISTS (SELECT 1 FROM users WHERE lower(username) = lower(candidate));
      k := k + 1;
    END LOOP;
    UPDATE users SET username = candidate WHERE id = r.id;
  END LOOP;
END $$;
DROP INDEX users_username_lower_tmp;

-- The guarantee itself: concurrent claims of one name cannot both commit.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
-- Finds who is waiting for a released name, earliest claim first.
CREATE INDEX users_claimed_lower ON users (lower(claimed_username), claimed_at, id);

-- Down Migration
DROP INDEX users_claimed_lower;
DROP INDEX users_username_lower;
ALTER TABLE users ADD COLUMN username_key text UNIQUE;
UPDATE users SET username_key = lower(username);
ALTER TABLE users DROP COLUMN claimed_at, DROP COLUMN claimed_username;
