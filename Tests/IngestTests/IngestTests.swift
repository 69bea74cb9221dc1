import Testing
import Ingest
