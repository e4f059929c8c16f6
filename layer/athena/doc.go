// Package athena holds the proof that the Athena DDL in this directory reads
// the archive sluice writes; the SQL files are the product.
package athena
