-- The ledger check of the order example: for every order of a run, the
-- effects found in the three services' ledgers against what its scenario
-- must leave behind. One row per order whose ledgers differ, plus one per
-- effect recorded for a saga the run did not start; no rows = consistent.
--
-- Needs a table order_run(saga_id text, scenario text) holding the run
-- (order-starter --results gives the rows). Effects per service are listed
-- sorted and joined by '+': 'applied+undone' = done once and undone once;
-- 'nothing' = no effect. An expectation may list alternatives with '|':
-- a declined charge whose first attempt timed out (the payment service was
-- slow to answer) is compensated as "outcome unknown", which voids it.
-- The ledgers' key (saga, step, effect) already refuses a second 'applied'
-- or 'undone'; what this check adds is that each saga has exactly the
-- effects its outcome calls for: nothing applied by a compensated saga is
-- left standing, nothing is undone that was not applied, nothing voided.
WITH expected (scenario, inventory, payment, shipping) AS (VALUES
  ('ok',           'applied',        'applied',        'applied'),
  ('flaky',        'applied',        'applied',        'applied'),
  ('declined',     'applied+undone', 'nothing|voided', 'nothing'),
  ('slow',         'applied+undone', 'applied+undone', 'nothing'),
  ('out_of_stock', 'nothing',        'nothing',        'nothing'),
  ('cancelled',    'applied+undone', 'nothing',        'nothing')),
effects AS (
  SELECT 'inventory' AS service, saga_id, effect FROM inventory.ledger
  UNION ALL SELECT 'payment', saga_id, effect FROM payment.ledger
  UNION ALL SELECT 'shipping', saga_id, effect FROM shipping.ledger),
actual AS (
  SELECT r.saga_id, r.scenario,
    coalesce(string_agg(e.effect, '+' ORDER BY e.effect)
             FILTER (WHERE e.service = 'inventory'), 'nothing') AS inventory,
    coalesce(string_agg(e.effect, '+' ORDER BY e.effect)
             FILTER (WHERE e.service = 'payment'), 'nothing') AS payment,
    coalesce(string_agg(e.effect, '+' ORDER BY e.effect)
             FILTER (WHERE e.service = 'shipping'), 'nothing') AS shipping
  FROM order_run r LEFT JOIN effects e USING (saga_id)
  GROUP BY r.saga_id, r.scenario)
SELECT a.saga_id, a.scenario,
       format('inventory %s, payment %s, shipping %s; expected %s, %s, %s',
              a.inventory, a.payment, a.shipping,
              x.inventory, x.payment, x.shipping) AS problem
FROM actual a LEFT JOIN expected x USING (scenario)
WHERE x.scenario IS NULL
   OR NOT (a.inventory = ANY (string_to_array(x.inventory, '|'))
           AND a.payment = ANY (string_to_array(x.payment, '|'))
           AND a.shipping = ANY (string_to_array(x.shipping, '|')))
UNION ALL
SELECT e.saga_id, NULL, format('%s %s for a saga this run did not start',
                               e.service, e.effect)
FROM effects e WHERE NOT EXISTS (SELECT 1 FROM order_run r
                                 WHERE r.saga_id = e.saga_id)
UNION ALL
-- Data passed between the steps: a compensation names the reference its DO
-- replied with (the refund names the charge; none when the DO's outcome
-- was never learnt), and each later step received the references the
-- earlier ones replied with.
SELECT u.saga_id, NULL,
       format('%s %s with reference %s, but its DO was applied as %s',
              u.service, u.effect, u.reference, a.reference)
FROM (SELECT 'inventory' AS service, * FROM inventory.ledger
      UNION ALL SELECT 'payment', * FROM payment.ledger
      UNION ALL SELECT 'shipping', * FROM shipping.ledger) u
JOIN (SELECT 'inventory' AS service, * FROM inventory.ledger
      UNION ALL SELECT 'payment', * FROM payment.ledger
      UNION ALL SELECT 'shipping', * FROM shipping.ledger) a
  ON a.service = u.service AND a.saga_id = u.saga_id AND a.step = u.step
     AND a.effect = 'applied'
WHERE u.effect <> 'applied' AND u.reference IS NOT NULL
  AND u.reference IS DISTINCT FROM a.reference
UNION ALL
SELECT r.saga_id, r.scenario,
       'inventory undone without the reservation its DO replied with'
FROM order_run r JOIN inventory.ledger u ON u.saga_id = r.saga_id
WHERE u.effect = 'undone' AND u.reference IS NULL
  AND r.scenario IN ('declined', 'slow') -- its reservation was answered
UNION ALL
SELECT p.saga_id, NULL,
       format('payment received %s, inventory replied %s',
              coalesce(p.received, 'nothing'), i.reference)
FROM payment.ledger p JOIN inventory.ledger i
  ON i.saga_id = p.saga_id AND i.effect = 'applied'
WHERE p.effect = 'applied' AND p.received IS DISTINCT FROM i.reference
UNION ALL
SELECT s.saga_id, NULL,
       format('shipping received %s, expected %s+%s',
              coalesce(s.received, 'nothing'), i.reference, p.reference)
FROM shipping.ledger s
JOIN inventory.ledger i ON i.saga_id = s.saga_id AND i.effect = 'applied'
JOIN payment.ledger p ON p.saga_id = s.saga_id AND p.effect = 'applied'
WHERE s.effect = 'applied'
  AND s.received IS DISTINCT FROM i.reference || '+' || p.reference
ORDER BY 1, 3;
