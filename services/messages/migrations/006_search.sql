-- Up Migration

-- SPEC 10 search: GET /search/messages finds the caller's messages whose
-- current content matches every word of q.
--
-- The matching rule (search_query below builds it, docs/api-notes.md states it):
--  * q is split on white space in the service (as JavaScript's \s does);
--  * each word goes through the same normalisation as the content: unaccent
--    (search_unaccent), then PostgreSQL's default text-search parser and the
--    'simple' dictionary (lower case, no stemming, no stop words). A word
--    therefore becomes the same lexemes its text would be in a message:
--    'Café' → cafe; 'e-mail' → e-mail, e, mail; "don't" → don, t;
--    'foo.org/x' → foo.org/x, foo.org, /x;
--  * every lexeme is a prefix (:*): a word of q matches a word of the content
--    it starts (cafe → Café, zur → Zürich); a word of q that made several
--    lexemes must find them in that order and adjacent, as the parser places
--    them (<N>), so "don't" does not match "don … to";
--  * the words are ANDed;
--  * a word that makes no lexeme (only punctuation, emoji) is left out; a q
--    with no word left matches nothing.
-- The tsquery is assembled from quoted lexemes (search_lexeme), never from
-- q's text, so quotes, & | ! : * ( ) and backslashes in q are only characters
-- the parser drops or keeps inside a lexeme: they cannot change the query.
--
-- Restricting to the caller's messages inside the index: a message's
-- lexemes are stored twice, once behind each participant's key (search_key,
-- 8 hex digits of md5 of the user id, prepended to the lexeme), and a query
-- asks only for the caller's key. So the GIN index yields only the caller's
-- candidates: a word common across all users, or a two-letter prefix that
-- expands to thousands of lexemes, costs what it matches in the caller's own
-- messages, not in the whole table, however many conversations they have.
-- Two users may share a key; the query also checks that the caller is the
-- row's sender or recipient, so a collision costs a few extra candidates and
-- never a wrong answer. The price: each message's words are indexed twice,
-- and a user's words are entries of their own (docs/performance.md, "Search").

-- Trusted since PostgreSQL 13: a role with CREATE on the database may add
-- it. Into this schema, unless the database has it already in another one;
-- search_unaccent finds it wherever it is.
CREATE EXTENSION IF NOT EXISTS unaccent;

-- unaccent() is STABLE (its one-argument form finds the dictionary through
-- search_path), so it cannot feed a generated column or an index. The
-- two-argument form with the dictionary named by schema does not depend on
-- search_path; it is as immutable as the unaccent rules file, which changes
-- only with a PostgreSQL upgrade (then: REINDEX and rewrite the column).
DO $migration$
DECLARE
  ext_schema text;
BEGIN
  SELECT n.nspname INTO STRICT ext_schema
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
  WHERE e.extname = 'unaccent';
  EXECUTE format(
    $f$CREATE FUNCTION search_unaccent(text) RETURNS text
       LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
       AS $body$SELECT %I.unaccent(%L::regdictionary, $1)$body$$f$,
    ext_schema, format('%I.unaccent', ext_schema));
END
$migration$;

-- A user's prefix on their messages' lexemes. Fixed length, so a key
-- followed by a lexeme reads back unambiguously.
CREATE FUNCTION search_key(user_id text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT substr(md5(user_id), 1, 8)
$$;

-- A lexeme quoted for tsvector/tsquery input: within quotes only ' and \ are special.
CREATE FUNCTION search_lexeme(lexeme text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT '''' || replace(replace(lexeme, E'\\', E'\\\\'), '''', '''''') || ''''
$$;

-- The indexed document: the content's lexemes with their positions (phrase
-- matching needs them), each behind the sender's and the recipient's key. A
-- lexeme is at most 2047 bytes; the parser already drops longer words, and
-- the few that the key would push past the limit are dropped here.
-- SET search_path: the generated column is computed by whoever writes the
-- row, under their search_path (pg_restore's is empty); these functions find
-- their helpers in the schema they were made in.
CREATE FUNCTION search_document(sender text, recipient text, content text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
  SELECT coalesce(string_agg(search_lexeme(k.key || l.lexeme) || ':' || array_to_string(l.positions, ','), ' '), '')::tsvector
  FROM unnest(to_tsvector('simple', search_unaccent(content))) AS l(lexeme, positions, weights)
  CROSS JOIN (VALUES (search_key(sender)), (search_key(recipient))) AS k(key)
  WHERE octet_length(l.lexeme) <= 2047 - 8
$$;

-- The query of `words` (q split on white space) for `user_id`: each word's
-- lexemes behind the user's key, as prefixes, in the word's order with the
-- parser's gaps (<N>); the words ANDed. NULL when no word makes a lexeme:
-- that matches nothing.
CREATE FUNCTION search_query(user_id text, words text[]) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
  WITH tokens AS (
    SELECT w.n, p.pos, l.lexeme, p.pos - lag(p.pos) OVER (PARTITION BY w.n ORDER BY p.pos) AS gap
    FROM unnest(words) WITH ORDINALITY AS w(word, n)
    CROSS JOIN LATERAL unnest(to_tsvector('simple', search_unaccent(w.word))) AS l(lexeme, positions, weights)
    CROSS JOIN LATERAL unnest(l.positions) AS p(pos)
  ), phrases AS (
    SELECT n, string_agg(CASE WHEN gap IS NULL THEN '' ELSE ' <' || gap || '> ' END || search_lexeme(search_key(user_id) || lexeme) || ':*', '' ORDER BY pos) AS phrase
    FROM tokens GROUP BY n
  )
  SELECT string_agg('(' || phrase || ')', ' & ' ORDER BY n)::tsquery FROM phrases
$$;

-- The other participant of each message, for the recipient's key: filled on
-- insert from the conversation (participants never change in a 1:1 chat).
ALTER TABLE messages ADD COLUMN recipient_id text;
UPDATE messages m SET recipient_id = CASE WHEN c.user_a = m.sender_id THEN c.user_b ELSE c.user_a END
FROM conversations c WHERE c.id = m.conversation_id;
ALTER TABLE messages ALTER COLUMN recipient_id SET NOT NULL;

CREATE FUNCTION messages_recipient() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
  SELECT CASE WHEN c.user_a = NEW.sender_id THEN c.user_b ELSE c.user_a END INTO NEW.recipient_id
  FROM conversations c WHERE c.id = NEW.conversation_id;
  RETURN NEW;
END $$;
-- BEFORE: generated columns are computed after BEFORE triggers, so the document sees it.
CREATE TRIGGER messages_recipient BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION messages_recipient();

-- Follows the content: an edit re-indexes the new text only, and a delete
-- (content '') leaves nothing to find. Adding it rewrites the table once.
ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (search_document(sender_id, recipient_id, content)) STORED;
-- fastupdate off: each send updates the index itself. With the pending list
-- on, the send that finds it full merges it into the index inside its own
-- transaction (a latency spike on the send path, under the conversation's
-- lock), and every search scans the list until then.
CREATE INDEX messages_search ON messages USING gin (search_vector) WITH (fastupdate = off);

-- Down Migration
DROP INDEX messages_search;
ALTER TABLE messages DROP COLUMN search_vector;
DROP TRIGGER messages_recipient ON messages;
DROP FUNCTION messages_recipient();
ALTER TABLE messages DROP COLUMN recipient_id;
DROP FUNCTION search_query(text, text[]);
DROP FUNCTION search_document(text, text, text);
DROP FUNCTION search_lexeme(text);
DROP FUNCTION search_key(text);
DROP FUNCTION search_unaccent(text);
-- The extension stays: another schema of the database may have come to use it.
