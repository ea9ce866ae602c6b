-- Fails (returns a row) when the per-country counts do not add up to the customers.
select 1
from (select sum(customers) as counted from {{ ref('customers_by_country') }}) as c
where c.counted <> (select count(*) from {{ ref('stg_customers') }})
