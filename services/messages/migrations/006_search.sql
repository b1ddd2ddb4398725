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
-- Restricting to the caller's conversations inside the index: a message's
-- lexemes are stored keyed by its conversation (search_key, 8 hex digits of
-- md5 of the id, prepended to each lexeme). The query is an OR over the
-- caller's conversations' keys, so the GIN index yields only the caller's
-- candidates: a word common across all users (or a two-letter prefix, which
-- expands to many lexemes) costs what it matches in the caller's own
-- conversations, not in the whole table. Two conversations may share a key;
-- the query also filters on conversation_id, so a collision costs a few
-- extra candidates and never a wrong answer. The price is a larger index
-- (each conversation's words are separate entries): docs/performance.md
-- "Search" has the figures.

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

-- A conversation's prefix on its messages' lexemes. Fixed length, so a key
-- followed by a lexeme reads back unambiguously.
CREATE FUNCTION search_key(conversation uuid) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT substr(md5(conversation::text), 1, 8)
$$;

-- A lexeme quoted for tsvector/tsquery input: within quotes only ' and \ are special.
CREATE FUNCTION search_lexeme(lexeme text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT '''' || replace(replace(lexeme, E'\\', E'\\\\'), '''', '''''') || ''''
$$;

-- The indexed document: the content's lexemes with their positions (phrase
-- matching needs them), each behind its conversation's key. A lexeme is at
-- most 2047 bytes; the parser already drops longer words, and the few that
-- the key would push past the limit are dropped here.
-- SET search_path: the generated column is computed by whoever writes the
-- row, under their search_path (pg_restore's is empty); these functions find
-- their helpers in the schema they were made in.
CREATE FUNCTION search_document(conversation uuid, content text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
  SELECT coalesce(string_agg(search_lexeme(search_key(conversation) || l.lexeme) || ':' || array_to_string(l.positions, ','), ' '), '')::tsvector
  FROM unnest(to_tsvector('simple', search_unaccent(content))) AS l(lexeme, positions, weights)
  WHERE octet_length(l.lexeme) <= 2047 - 8
$$;

-- The query for `words` (q split on white space) in `conversations`: for
-- each conversation, every word's lexemes as prefixes, in the word's order
-- with the parser's gaps (<N>); the words ANDed; the conversations ORed.
-- NULL when no word makes a lexeme or there is no conversation: matches nothing.
CREATE FUNCTION search_query(conversations uuid[], words text[]) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
  WITH tokens AS (
    SELECT w.n, p.pos, l.lexeme, p.pos - lag(p.pos) OVER (PARTITION BY w.n ORDER BY p.pos) AS gap
    FROM unnest(words) WITH ORDINALITY AS w(word, n)
    CROSS JOIN LATERAL unnest(to_tsvector('simple', search_unaccent(w.word))) AS l(lexeme, positions, weights)
    CROSS JOIN LATERAL unnest(l.positions) AS p(pos)
  ), phrases AS (
    SELECT k.key, t.n,
           string_agg(CASE WHEN t.gap IS NULL THEN '' ELSE ' <' || t.gap || '> ' END || search_lexeme(k.key || t.lexeme) || ':*', '' ORDER BY t.pos) AS phrase
    FROM (SELECT DISTINCT search_key(c) AS key FROM unnest(conversations) AS c) k CROSS JOIN tokens t
    GROUP BY k.key, t.n
  ), per_conversation AS (
    SELECT key, string_agg('(' || phrase || ')', ' & ' ORDER BY n) AS conjunction FROM phrases GROUP BY key
  )
  SELECT string_agg('(' || conjunction || ')', ' | ')::tsquery FROM per_conversation
$$;

-- Follows the content: an edit re-indexes the new text only, and a delete
-- (content '') leaves nothing to find. Adding it rewrites the table once.
ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (search_document(conversation_id, content)) STORED;
CREATE INDEX messages_search ON messages USING gin (search_vector);

-- The caller's conversations, for the query's keys and its filter
-- (participants' primary key leads with conversation_id).
CREATE INDEX participants_user ON participants (user_id, conversation_id);

-- Down Migration
DROP INDEX participants_user;
DROP INDEX messages_search;
ALTER TABLE messages DROP COLUMN search_vector;
DROP FUNCTION search_query(uuid[], text[]);
DROP FUNCTION search_document(uuid, text);
DROP FUNCTION search_lexeme(text);
DROP FUNCTION search_key(uuid);
DROP FUNCTION search_unaccent(text);
-- The extension stays: another schema of the database may have come to use it.
